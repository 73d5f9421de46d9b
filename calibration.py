"""Calibration: set one strength option of a method so that a metric reaches a target.

`main_forget.py --calibrate unlearn_lr --calibrate_target 40 --calibrate_range 1e-4,1e-1`
runs the method at several learning rates, in one process from one loaded model and data,
and keeps the run whose UA comes closest to 40 (the full evaluation once, at the end). The
search is a bisection in log space: both ends first, then the geometric middle of the
bracket, until the metric is within --calibrate_tolerance of the target or
--calibrate_steps runs were made. A strength whose model gives non-finite weights or
outputs counts as too strong. The target is a number, or result JSON files whose metric
is averaged (Retrain's runs of the same original model: "the forgetting Retrain reaches").

`--calibrated_from FILE` reuses the value a calibrated run chose, on another seed: the
measurement then does not reuse the draw the value was chosen on.

This module holds the options, their checks and the search; the runs themselves are made
by `unlearning_run.py`. Nothing here imports torch.
"""

import glob
import json
import math
import os
from dataclasses import dataclass, field

from errors import UserError

OPTIONS = ("unlearn_lr", "alpha")  # the strength options a calibration may set
# How each metric moves as the strength grows: UA rises, RA and TA fall.
METRIC_DIRECTION = {"UA": +1, "RA": -1, "TA": -1}
METRIC_SPLIT = {"UA": "forget", "RA": "retain", "TA": "test"}  # the one split each metric needs between steps
# What fixes the forget set, apart from --seed under random forgetting: runs to match must agree on these.
FORGET_SET_ARGS = ("dataset", "class_to_replace", "num_indexes_to_replace", "indexes_to_replace", "train_per_class", "train_positions")
AT_RANGE_END = "at range end"
NOT_WITHIN_TOLERANCE = "not within tolerance"


def add_arguments(parser):
    group = parser.add_argument_group(
        "calibration (main_forget.py: set one strength option so that a metric reaches a target; docs/calibration.md)"
    )
    group.add_argument("--calibrate", choices=OPTIONS, default=None, help="the option to set: unlearn_lr (iterative methods) or alpha")
    group.add_argument(
        "--calibrate_target",
        default=None,
        help="a number (percent), or result JSON files (comma-separated, globs allowed) whose mean metric is the target, "
        "e.g. the Retrain runs of the same original model",
    )
    group.add_argument("--calibrate_range", default=None, help="LOW,HIGH: the values the search may try (positive, LOW < HIGH)")
    group.add_argument("--calibrate_metric", choices=tuple(METRIC_DIRECTION), default="UA", help="the metric brought to the target")
    group.add_argument("--calibrate_tolerance", type=float, default=1.0, help="percentage points from the target that end the search")
    group.add_argument("--calibrate_steps", type=int, default=8, help="the most unlearning runs the search makes, both ends included")
    group.add_argument(
        "--calibrate_curve",
        action="store_true",
        help="record UA, RA and TA at every step (a trade-off curve over the values tried; costs an evaluation of each split per step)",
    )
    group.add_argument(
        "--calibrated_from",
        default=None,
        help="result JSON of a calibrated run: this run uses the value it chose (on this run's --seed)",
    )


# ---------------------------------------------------------------- options


def parse_range(text):
    """'LOW,HIGH' -> (low, high), two positive finite numbers with low < high."""
    try:
        low, high = (float(part) for part in text.split(","))
    except (AttributeError, ValueError):
        raise UserError(f"--calibrate_range {text!r}: expected LOW,HIGH, two numbers, e.g. 1e-4,1e-1") from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
        raise UserError(f"--calibrate_range {text}: expected 0 < LOW < HIGH, finite (the search is in log space)")
    return low, high


@dataclass
class Target:
    value: float
    files: list = field(default_factory=list)  # the result files averaged (none for a number)
    values: list = field(default_factory=list)  # their metric, in the same order


def read_result(path, option):
    """A readable result JSON (<method>eval_result.json), or UserError naming `option`."""
    try:
        with open(path) as f:
            result = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{option} {path}: file not found") from None
    except (OSError, ValueError) as err:
        raise UserError(f"{option} {path}: not a result JSON ({err})") from None
    if not isinstance(result, dict) or not isinstance(result.get("args"), dict):
        raise UserError(f"{option} {path}: not a result JSON of main_forget.py (<method>eval_result.json)")
    return result


def target_files(spec):
    """The files a --calibrate_target names: comma-separated paths or globs, each matching something."""
    files = []
    for part in (p.strip() for p in spec.split(",")):
        matches = sorted(glob.glob(part)) if glob.has_magic(part) else [part]
        if not matches or not all(os.path.isfile(m) for m in matches):
            raise UserError(
                f"--calibrate_target {part}: no such file (give a number, or result JSON files such as <run>/retraineval_result.json)"
            )
        files += matches
    return files


def read_target(spec, metric, args=None):
    """The --calibrate_target: a number, or the mean `metric` of result files (checked against this run's forget set)."""
    try:
        value = float(spec)
    except ValueError:
        pass
    else:
        if not 0 <= value <= 100:
            raise UserError(f"--calibrate_target {spec}: a target is a percentage, from 0 to 100")
        return Target(value)
    files = target_files(spec)
    values = []
    for path in files:
        result = read_result(path, "--calibrate_target")
        if args is not None:
            check_same_forget_set(result, args, "--calibrate_target", path)
        value = result.get(metric)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(f"--calibrate_target {path}: holds no finite {metric}")
        values.append(float(value))
    return Target(sum(values) / len(values), [os.path.abspath(p) for p in files], values)


def check_same_forget_set(result, args, option, path):
    """UserError when a result file was made on another dataset or forget set than this run."""
    saved = result["args"]
    for name in FORGET_SET_ARGS:
        if name in saved and saved[name] != getattr(args, name, None):
            raise UserError(
                f"{option} {path}: made with --{name} {saved[name]} (this run: {getattr(args, name, None)}); "
                "it must come from runs on the same data and forget set"
            )


def check_args(args, record):
    """Check the calibration options against the --unlearn method's record (one line each).

    --calibrated_from is read here: the run's option takes the value it chose.
    """
    if args.calibrate and args.calibrated_from:
        raise UserError("--calibrate and --calibrated_from: give one (search for a value, or reuse one a calibrated run chose)")
    if args.calibrated_from:
        chosen = read_calibrated(args.calibrated_from, args)
        setattr(args, chosen["option"], chosen["chosen"])
        return
    if not args.calibrate:
        for option in ("calibrate_target", "calibrate_range"):
            if getattr(args, option) is not None:
                raise UserError(f"--{option} is read only with --calibrate OPTION (the option to set)")
        return
    options = record.strength_options()
    if args.calibrate not in options:
        readable = f"it can calibrate {' or '.join(options)}" if options else "it has no strength option to calibrate"
        raise UserError(f"--calibrate {args.calibrate}: {args.unlearn} does not read --{args.calibrate}; {readable}")
    if args.calibrate_target is None:
        raise UserError("--calibrate needs --calibrate_target: a number, or result JSON files whose mean metric is the target")
    if args.calibrate_range is None:
        raise UserError("--calibrate needs --calibrate_range LOW,HIGH: the values the search may try")
    parse_range(args.calibrate_range)
    if not math.isfinite(args.calibrate_tolerance) or args.calibrate_tolerance <= 0:
        raise UserError(f"--calibrate_tolerance {args.calibrate_tolerance}: must be a positive number of percentage points")
    if args.calibrate_steps < 2:
        raise UserError(f"--calibrate_steps {args.calibrate_steps}: must be at least 2 (the two ends of the range)")
    read_target(args.calibrate_target, args.calibrate_metric, args)


def read_calibrated(path, args):
    """What a calibrated run chose ({"from", "option", "chosen", "seed", "metric", "target"}), after
    checking that it was the same method on the same forget set."""
    result = read_result(path, "--calibrated_from")
    calibration = result.get("calibration")
    if not isinstance(calibration, dict) or "steps" not in calibration:
        raise UserError(f'--calibrated_from {path}: this run was not calibrated (it holds no "calibration" with steps)')
    if calibration.get("option") not in OPTIONS:
        raise UserError(f"--calibrated_from {path}: its calibration names no option of {', '.join(OPTIONS)}")
    if result.get("method") != args.unlearn:
        raise UserError(f"--calibrated_from {path}: calibrated {result.get('method')}, this run is --unlearn {args.unlearn}")
    check_same_forget_set(result, args, "--calibrated_from", path)
    return {
        "from": os.path.abspath(path),
        **{key: calibration.get(key) for key in ("option", "chosen", "seed", "metric", "target")},
    }


# ---------------------------------------------------------------- the search


class Unreachable(UserError):
    """The declared range cannot reach the target."""


@dataclass
class Search:
    chosen: float
    steps: list  # [{"value", "metric"}] in the order tried; metric None: non-finite (too strong)
    flags: list


def closest(steps, target):
    """The step whose metric is nearest the target (ties: the latest), among those with a metric."""
    best = None
    for step in steps:
        if step["metric"] is not None and (best is None or abs(step["metric"] - target) <= abs(best["metric"] - target)):
            best = step
    return best


def weakest_within(steps, target, tolerance):
    """The step of the smallest value whose metric is within `tolerance` of the target; else the closest."""
    within = [step for step in steps if step["metric"] is not None and abs(step["metric"] - target) <= tolerance]
    return min(within, key=lambda step: step["value"]) if within else closest(steps, target)


def search(measure, low, high, target, metric="UA", tolerance=1.0, steps=8, known=None):
    """Bisect log(value) over [low, high] until `measure(value)` is within `tolerance` of `target`.

    `measure(value)` gives the metric of a run at that value, or None when the run broke
    (non-finite weights or outputs: too strong). `known` {value: metric} are steps already
    made (a resumed search): they are not measured again. The metric must move with the
    strength as METRIC_DIRECTION says. Unreachable when the range cannot reach the target.
    A target within `tolerance` of the metric's end (UA 100) is met by every strength past a
    threshold: the search then bisects towards that threshold with every step it may make,
    and keeps the weakest step within tolerance (a stronger one only costs more).
    """
    sign, known = METRIC_DIRECTION[metric], dict(known or {})
    tried = []

    def at(value):
        result = known[value] if value in known else measure(value)
        tried.append({"value": value, "metric": result})
        return result

    def excess(value):  # > 0: stronger than the target asks
        return math.inf if value is None else sign * (value - target)

    def within(value):
        return value is not None and abs(value - target) <= tolerance

    # A target at the metric's end (UA 100: Retrain's class-wise forgetting) is reached by every strength
    # past some point: there the search looks for the weakest that reaches it, and uses all its steps.
    saturated = target >= 100 - tolerance if sign > 0 else target <= tolerance
    more, less = ("above", "below") if sign > 0 else ("below", "above")
    at_low = at(low)
    if at_low is None:
        raise Unreachable(f"--calibrate_range: already the low end {low:g} breaks the model (non-finite weights or outputs); lower LOW")
    if excess(at_low) > tolerance:
        raise Unreachable(
            f"--calibrate_range: already the low end {low:g} gives {metric} {at_low:.2f}, {more} the target {target:.2f}; lower LOW"
        )
    if not within(at_low):
        at_high = at(high)
        if excess(at_high) < -tolerance:
            raise Unreachable(
                f"--calibrate_range: even the high end {high:g} gives {metric} {at_high:.2f}, {less} the target {target:.2f}; raise HIGH"
            )
        lo, hi, value = low, high, at_high
        while (saturated or not within(value)) and len(tried) < steps:
            middle = math.sqrt(lo * hi)
            value = at(middle)
            if excess(value) > 0 or (saturated and within(value)):
                hi = middle
            else:
                lo = middle
    best = weakest_within(tried, target, tolerance) if saturated else closest(tried, target)
    flags = []
    if best["value"] in (low, high):
        flags.append(AT_RANGE_END)
    if not within(best["metric"]):
        flags.append(NOT_WITHIN_TOLERANCE)
    return Search(best["value"], tried, flags)
