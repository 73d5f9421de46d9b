"""The unlearning run, as a library: the forget set, the loaders, the model under its mask,
one method, the evaluation and the result files.

`main_forget.py` is its command line (`forget(args)`); `main_backdoor.py` unlearns a poison
with the same pieces (`unlearn_model`, `method_loaders`, `write_results`). A run keeps
`<method>checkpoint.pth.tar` in --save_dir: per-epoch progress while an iterative method
runs (unlearn/loop.py), then the unlearned model and its evaluation so far; `--resume`
continues from either and skips every finished stage. File names: `paths.py`.
"""

import copy
import logging
import os
import time

import torch
from torch import nn

import calibration
import evaluation
import pruner
import unlearn
from checkpoints import atomic_save_json, atomic_save_npy, atomic_torch_save, load_checkpoint, state_dict_of
from dataset import get_dataset, load_dataset, make_loader, select_forget_set, unlearning_positions
from errors import UserError
from paths import eval_json_path, eval_result_path, forget_indexes_path, unlearn_checkpoint_path, unlearning_outputs
from trainer import NonFiniteOutputs, build_model, evaluate
from unlearn.loop import NonFiniteWeights, check_finite, epoch_checkpoints
from utils import device_synchronize, get_device, open_save_dir, setup_seed, versions

log = logging.getLogger("unlearn_sparse")

# ---------------------------------------------------------------- checks against the --mask checkpoint

DATA_OPTIONS = ("dataset", "train_per_class", "test_per_class", "train_positions")


def check_same_data(checkpoint, args):
    """UserError when the --mask checkpoint records a dataset or size caps other than this run's."""
    saved = checkpoint.get("args") if isinstance(checkpoint, dict) else None
    if not isinstance(saved, dict):
        return  # a checkpoint of the original code, or one without its arguments
    for option in DATA_OPTIONS:
        then, now = saved.get(option), getattr(args, option)
        if option in saved and then != now:
            show = {None: "all"}
            raise UserError(
                f"--mask {args.mask} was trained with --{option} {show.get(then, then)} (this run: {show.get(now, now)}); "
                "pass the data options of the run that made it"
            )


def check_fits_model(model, state_dict, option, path, args):
    """UserError naming `option` when its checkpoint was made for another --arch or dataset."""
    try:
        pruner.check_state_dict_fits(model, state_dict)
    except UserError as err:
        raise UserError(f"{option} {path} (--arch {args.arch}, --dataset {args.dataset}): {err}") from None


# ---------------------------------------------------------------- loaders


def method_loaders(train, retain, forget, val_loader, test_loader, args, augment):
    """The loaders a method sees: retain and forget shuffled (seeded by --seed) with the training augmentation."""
    bs = args.batch_size
    return {
        "retain": make_loader(train, retain, bs, shuffle=True, augment=augment, seed=args.seed),
        "forget": make_loader(train, forget, bs, shuffle=True, augment=augment, seed=args.seed),
        "val": val_loader,
        "test": test_loader,
    }


def build_loaders(splits, positions, args, device):
    """Loaders the methods train on (shuffled, augmented) and the evaluation loaders, and
    `fresh()`, which makes new method loaders (each shuffle from its first draw again)."""
    train, val, test = splits.train.to(device), splits.val.to(device), splits.test.to(device)
    bs = args.batch_size
    val_loader, test_loader = make_loader(val, positions["val"], bs), make_loader(test, positions["test"], bs)

    def fresh():
        return method_loaders(train, positions["retain"], positions["forget"], val_loader, test_loader, args, splits.augment)

    for_method = fresh()
    for_evaluation = {
        "retain": make_loader(train, positions["retain"], bs),
        "forget": make_loader(train, positions["forget"], bs),
        "val": val_loader,
        "test": test_loader,
    }
    return for_method, for_evaluation, fresh


# ---------------------------------------------------------------- running a method


def prepare_model(model, state_dict, method):
    """Put the checkpoint's mask on `model`, and its weights unless `method` retrains.

    `model` is freshly initialised; the methods that start from scratch keep that
    initialisation (with the mask).
    """
    pruner.check_state_dict_fits(model, state_dict)
    if unlearn.METHODS[method].from_scratch:
        mask = pruner.extract_mask(state_dict)
        if mask:
            pruner.apply_mask(model, mask)
    else:
        pruner.load_pruned_model(model, state_dict)


def warn_ignored_options(record, args):
    """One warning per option of other methods given on the command line (left at its default, it is silent)."""
    for option, readers in unlearn.method_options().values():
        if record.name not in readers and getattr(args, option.name) != option.default:
            log.warning("%s is read by %s: ignored by %s", option.spelling, ", ".join(readers), record.name)


def strength_settings(record, args):
    """['--alpha 3', ...]: the method's strength options as this run set them."""
    return [f"--{name} {getattr(args, name):g}" for name in record.strength_options()]


def non_finite_outputs_error(record, args, bad, save_dir):
    """The one line for an unlearned model whose logits are not all finite (its checkpoint is kept)."""
    settings = strength_settings(record, args)
    lower = f"rerun with a smaller {' or '.join(s.split()[0] for s in settings)}" if settings else "is the --mask checkpoint damaged?"
    return UserError(
        f"{record.name}{' with ' + ' '.join(settings) if settings else ''} gives non-finite outputs on {bad.rows} of {bad.seen} "
        f"{bad.split or ''} images; {lower}. The unlearned model is kept in {unlearn_checkpoint_path(save_dir, record.name)}; "
        "no results were written."
    )


def non_finite_error(record, args, tensor_name):
    """The one line for a method whose weights stopped being finite: which setting to lower."""
    settings = strength_settings(record, args)
    if not settings:  # raw changes nothing: the weights came that way
        return UserError(f"{record.name}: the model holds non-finite weights ({tensor_name}); is the --mask checkpoint damaged?")
    options = " or ".join(s.split()[0] for s in settings)
    return UserError(
        f"{record.name} with {' '.join(settings)} made the weights non-finite ({tensor_name}); "
        f"rerun with a smaller {options}. No results were written."
    )


def run_unlearning(record, data_loaders, model, args, device, checkpoints=None):
    """Run the method of `record` seeded by --seed; returns its wall-clock seconds (the RTE, nothing else timed).

    Checks afterwards that the weights are finite and the mask is the one it was given.
    With per-epoch `checkpoints`, the seconds of the epochs before an interruption are
    counted and the time spent writing checkpoints is not.
    """
    try:
        return timed_unlearning(record, data_loaders, model, args, device, checkpoints)
    except NonFiniteWeights as bad:
        raise non_finite_error(record, args, bad.tensor_name) from None


def timed_unlearning(record, data_loaders, model, args, device, checkpoints=None, run=None):
    """`run_unlearning`, with NonFiniteWeights raised as it is (a calibration counts it as too strong).
    `run` stands in for the record's own (a calibration's step at one strength)."""
    input_mask = pruner.current_mask(model)
    setup_seed(args.seed)
    device_synchronize(device)
    start = time.perf_counter()
    (run or record.run)(data_loaders, model, nn.CrossEntropyLoss(), args)
    device_synchronize(device)
    seconds = time.perf_counter() - start
    if checkpoints is not None:
        seconds += checkpoints.seconds_before - checkpoints.seconds_saving
    check_finite(model)
    if not record.keeps_mask:
        return seconds
    after = pruner.current_mask(model)
    if record.prunes:  # it may prune more, never revive a pruned weight
        changed = any(bool((after[k][input_mask[k] == 0] != 0).any()) for k in input_mask)
    else:
        changed = any(not torch.equal(input_mask[k], after[k]) for k in input_mask)
    if changed:
        raise RuntimeError(f"{args.unlearn} changed the mask: this is a bug, please report it")
    return seconds


def unlearn_and_save(record, data_loaders, model, args, device, save_dir, result, progress=None):
    """`run_unlearning` with per-epoch checkpoints in save_dir, continuing `progress` when given.

    Sets result["unlearn_seconds"] (and what the method reports beside it) and saves the
    finished checkpoint (model + result).
    """
    path = unlearn_checkpoint_path(save_dir, record.name)
    with epoch_checkpoints(path, result, progress, args.checkpoint_every_s) as checkpoints:
        result["unlearn_seconds"] = run_unlearning(record, data_loaders, model, args, device, checkpoints)
    result.update(reported(record, args))
    save_unlearn_checkpoint(model, result, save_dir, record.name)
    return result


def reported(record, args):
    """{name: value} of what the method's run set on args for the result (SalUn: its mask's seconds)."""
    return {name: getattr(args, name) for name in record.reports if getattr(args, name, None) is not None}


def unlearn_model(model, original_state, loaders, args, device, result, progress):
    """Set `model` up from the --mask checkpoint's state dict and run --unlearn on it, saving as it goes."""
    prepare_model(model, original_state, args.unlearn)
    log.info("%s from %s (conv sparsity %.2f%%)", args.unlearn, args.mask, pruner.sparsity(model))
    unlearn_and_save(unlearn.METHODS[args.unlearn], loaders, model, args, device, args.save_dir, result, progress)
    log.info("%s took %.1f s", args.unlearn, result["unlearn_seconds"])


def save_unlearn_checkpoint(model, result, save_dir, method):
    """`<method>checkpoint.pth.tar`: the unlearned model and its evaluation so far."""
    state = {"state_dict": pruner.compact_state_dict(model.state_dict()), "evaluation_result": result}
    atomic_torch_save(state, unlearn_checkpoint_path(save_dir, method))


def read_resume_point(model, save_dir, method, device):
    """What `--resume` finds in `<method>checkpoint.pth.tar`: (result so far, progress or None).

    A finished unlearning (result has "unlearn_seconds") is checked against `model` and
    loaded into it (mask, then weights); an interrupted one returns its progress with the
    weights in progress["state_dict"], which the iterative method loads (and checks) once
    it has set the model up; no file gives ({}, None).
    """
    path = unlearn_checkpoint_path(save_dir, method)
    if not os.path.isfile(path):
        log.info("--resume: no %s, starting from the beginning", path)
        return {}, None
    saved = load_checkpoint(path, device)
    state_dict = state_dict_of(saved)
    result = dict(saved.get("evaluation_result") or {})
    if "unlearn_seconds" in result:
        pruner.load_pruned_model(model, state_dict)
        log.info("--resume: %s holds the unlearned model; skipping unlearning", path)
        return result, None
    progress = saved.get("progress")
    if progress is None:
        pruner.check_state_dict_fits(model, state_dict)
        return result, None
    return result, {**progress, "state_dict": state_dict}


# ---------------------------------------------------------------- calibration (calibration.py)


def metric_value(model, for_evaluation, metric):
    """The calibrated metric, on its one split; None when the model's outputs are not all finite."""
    try:
        accuracy = evaluate(model, for_evaluation[calibration.METRIC_SPLIT[metric]], require_finite=True)
    except NonFiniteOutputs:
        return None
    return 100.0 - accuracy if metric == "UA" else accuracy


def curve_point(model, for_evaluation, metric, value):
    """--calibrate_curve: {UA, RA, TA} of a step (the calibrated one already measured), None when non-finite."""
    if value is None:
        return None
    point = {metric: value}
    for other in calibration.METRIC_SPLIT:
        if other not in point:
            point[other] = metric_value(model, for_evaluation, other)
    return None if None in point.values() else {key: point[key] for key in calibration.METRIC_SPLIT}


def step_runner(record, pristine, fresh_loaders, args, device):
    """run(value) -> (model, seconds, args): the method at that value of --calibrate, on a copy of
    `pristine` and new loaders, as a run given that value would make it. A method whose alpha
    scales a direction (FF, IU) computes the direction once; its seconds count in every step's."""
    option = args.calibrate
    if option == "alpha" and record.direction is not None:
        setup_seed(args.seed)
        device_synchronize(device)
        start = time.perf_counter()
        apply = record.direction(fresh_loaders(), pruner.clone_model(pristine), args)
        device_synchronize(device)
        direction_seconds = time.perf_counter() - start
        log.info("%s: direction computed once in %.1f s", record.name, direction_seconds)

        def method(data_loaders, model, criterion, step_args):
            return apply(model, step_args.alpha)
    else:
        direction_seconds, method = 0.0, record.run

    def run(value):
        step_args = copy.copy(args)
        setattr(step_args, option, value)
        model = pruner.clone_model(pristine)  # a pruned model cannot be deep-copied after a forward pass
        seconds = timed_unlearning(record, fresh_loaders(), model, step_args, device, run=method)
        return model, direction_seconds + seconds, step_args

    return run


def calibrate_and_unlearn(model, original_state, fresh_loaders, for_evaluation, args, device, result):
    """Unlearn at the value of --calibrate whose --calibrate_metric comes closest to the target.

    Returns the chosen step's model; `result` gets its "unlearn_seconds" and "calibration"
    (calibration.search; docs/calibration.md). Each step is saved in the unlearn checkpoint
    as it ends, so that --resume does not make it again (a step cut off is made again whole).
    """
    record = unlearn.METHODS[args.unlearn]
    target = calibration.read_target(args.calibrate_target, args.calibrate_metric, args)
    low, high = calibration.parse_range(args.calibrate_range)
    prepare_model(model, original_state, args.unlearn)
    pristine = model
    steps = result.setdefault("calibration_steps", [])
    known = {step["value"]: step["metric"] for step in steps}
    if known:
        log.info("--resume: %d calibration steps already made", len(known))
    run = step_runner(record, pristine, fresh_loaders, args, device)
    best = {}
    seconds_before, begin = result.get("calibration_search_seconds", 0.0), time.perf_counter()

    def measure(value):
        try:
            model, seconds, step_args = run(value)
            metric = metric_value(model, for_evaluation, args.calibrate_metric)
        except NonFiniteWeights:
            model, seconds, metric = None, None, None
        steps.append({"value": value, "metric": metric, "seconds": seconds})
        if args.calibrate_curve:
            steps[-1]["accuracies"] = curve_point(model, for_evaluation, args.calibrate_metric, metric)
        shown = "non-finite (too strong)" if metric is None else f"{metric:.2f}"
        log.info(
            "calibration step %d: --%s %g gives %s %s (target %.2f)",
            len(steps),
            args.calibrate,
            value,
            args.calibrate_metric,
            shown,
            target.value,
        )
        if metric is not None and calibration.closest(steps, target.value) is steps[-1]:
            best.update(value=value, model=model, seconds=seconds, args=step_args)
        result["calibration_search_seconds"] = seconds_before + time.perf_counter() - begin
        save_unlearn_checkpoint(pristine, result, args.save_dir, args.unlearn)
        return metric

    found = calibration.search(
        measure, low, high, target.value, args.calibrate_metric, args.calibrate_tolerance, args.calibrate_steps, known
    )
    if best.get("value") != found.chosen:  # a step a resumed search had made before: made again, the same way
        chosen_model, seconds, step_args = run(found.chosen)
        best.update(value=found.chosen, model=chosen_model, seconds=seconds, args=step_args)
    for flag in found.flags:
        log.warning(
            "calibration: the value chosen is %s (--calibrate_range %s, --calibrate_tolerance %g)",
            flag,
            args.calibrate_range,
            args.calibrate_tolerance,
        )
    setattr(args, args.calibrate, found.chosen)  # the result's args hold the value chosen
    for name, value in reported(record, best["args"]).items():
        setattr(args, name, value)
        result[name] = value
    result["unlearn_seconds"] = best["seconds"]
    result["calibration"] = {
        "option": args.calibrate,
        "metric": args.calibrate_metric,
        "target": target.value,
        "target_files": target.files,
        "target_values": target.values,
        "range": [low, high],
        "tolerance": args.calibrate_tolerance,
        "max_steps": args.calibrate_steps,
        "chosen": found.chosen,
        "chosen_metric": next(step["metric"] for step in steps if step["value"] == found.chosen),
        "seed": args.seed,
        "steps": result.pop("calibration_steps"),
        "flags": found.flags,
        "search_seconds": seconds_before + time.perf_counter() - begin,
    }
    result.pop("calibration_search_seconds", None)
    save_unlearn_checkpoint(best["model"], result, args.save_dir, args.unlearn)
    return best["model"]


def calibration_line(result):
    c = result["calibration"]
    if "steps" not in c:  # --calibrated_from
        return f"calibrated: --{c['option']} {c['chosen']:g}, chosen on seed {c['seed']} ({c['from']})"
    flags = f" [{', '.join(c['flags'])}]" if c["flags"] else ""
    return (
        f"calibration: --{c['option']} {c['chosen']:g} gives {c['metric']} {c['chosen_metric']:.2f} "
        f"(target {c['target']:.2f} +- {c['tolerance']:g}), {len(c['steps'])} steps in {c['search_seconds']:.0f} s{flags}"
    )


# ---------------------------------------------------------------- results


def complete_stages(result, stages, save):
    """Compute each named stage missing from `result`, calling `save()` after each one.

    Returns True when anything was computed (a finished run resumed computes nothing).
    """
    computed = False
    for name, stage in stages.items():
        if name not in result:
            result[name] = stage()
            computed = True
            save()
    return computed


def write_results(result, readable, model, args, units):
    """`<method>eval_result.pth.tar` (the original's file) and the readable `<method>eval_result.json`.

    `readable` holds what is particular to the run; the method, sparsity, mask, arguments
    and versions are added here.
    """
    atomic_torch_save(result, eval_result_path(args.save_dir, args.unlearn))
    record = {
        "method": args.unlearn,
        **readable,
        "sparsity": pruner.sparsity(model),
        "mask": os.path.abspath(args.mask),
        "args": vars(args),
        "versions": versions(),
        "units": units,
    }
    atomic_save_json(record, eval_json_path(args.save_dir, args.unlearn))


def results_written(computed, args):
    """Whether the result files need (re)writing: something was computed, or the JSON is missing."""
    return computed or not os.path.isfile(eval_json_path(args.save_dir, args.unlearn))


def scenario(forget, args):
    """class-wise (a whole class), random (--class_to_replace -1), class-subset, or indexes."""
    if forget.whole_class is not None:
        return "class-wise"
    if args.indexes_to_replace is not None:
        return "indexes"
    return "random" if args.class_to_replace == -1 else "class-subset"


# ---------------------------------------------------------------- main_forget.py


def forget(args):
    """Unlearn and evaluate as main_forget.py does, its options already checked (arg_parser.check_unlearn_args)."""
    record = unlearn.METHODS[args.unlearn]
    # Every check first: the mask file, the data, the forget set, the mask's fit.
    device = get_device(args.gpu, args.device, args.cudnn_benchmark)
    original_checkpoint = load_checkpoint(args.mask, "cpu", what="--mask checkpoint")
    check_same_data(original_checkpoint, args)
    original_state = state_dict_of(original_checkpoint)
    rewinding = args.rewind_epoch and args.rewind_pth and record.iterative
    rewind_state = state_dict_of(load_checkpoint(args.rewind_pth, "cpu", what="--rewind_pth checkpoint")) if rewinding else None
    splits = load_dataset(args)
    labels = splits.train.labels.numpy()
    forget_set = select_forget_set(labels, args.class_to_replace, args.num_indexes_to_replace, args.indexes_to_replace, args.seed)
    args.num_classes, args.forget_class = splits.num_classes, forget_set.whole_class
    # As the original: the model is built right after seeding with --train_seed, so the
    # retrain methods start from that initialisation (the mask run's own when the seeds agree).
    setup_seed(args.train_seed)
    model = build_model(args, splits, device)
    check_fits_model(model, original_state, "--mask", args.mask, args)
    if rewind_state is not None:
        check_fits_model(model, rewind_state, "--rewind_pth", args.rewind_pth, args)
    if record.check_inputs is not None:
        record.check_inputs(model, args)
    result, progress = read_resume_point(model, args.save_dir, args.unlearn, device) if args.resume else ({}, None)
    open_save_dir(args.save_dir, unlearning_outputs(args.unlearn), resume=args.resume)
    if args.rewind_pth and not rewinding:
        log.warning("--rewind_pth is read only by the iterative methods with --rewind_epoch k > 0: ignored")
    warn_ignored_options(record, args)

    atomic_save_npy(forget_set.positions, forget_indexes_path(args.save_dir))
    positions = unlearning_positions(splits, forget_set)
    kind = scenario(forget_set, args)
    log.info("forget %d, retain %d training images (%s)", len(positions["forget"]), len(positions["retain"]), kind)
    for_method, for_evaluation, fresh_loaders = build_loaders(splits, positions, args, device)
    if "unlearn_seconds" not in result:
        if args.calibrate:
            model = calibrate_and_unlearn(model, original_state, fresh_loaders, for_evaluation, args, device, result)
        else:
            if args.calibrated_from:
                result["calibration"] = calibration.read_calibrated(args.calibrated_from, args)
                if result["calibration"]["seed"] == args.seed:
                    log.warning(
                        "--calibrated_from: its value was chosen on this run's --seed %d: not an independent measurement", args.seed
                    )
            unlearn_model(model, original_state, for_method, args, device, result, progress)
    elif args.calibrate and "calibration" in result:
        setattr(args, args.calibrate, result["calibration"]["chosen"])

    retain, forget_eval, test = for_evaluation["retain"], for_evaluation["forget"], for_evaluation["test"]
    cap = get_dataset(args.dataset).mia_samples
    stages = {
        "accuracy": lambda: evaluation.split_accuracies(model, for_evaluation),
        "SVC_MIA_forget_efficacy": lambda: evaluation.mia_forget_efficacy(model, retain, forget_eval, test, cap),
        "SVC_MIA_training_privacy": lambda: evaluation.mia_training_privacy(model, retain, test, cap),
        "weights": lambda: evaluation.weight_change(model, original_state),
    }
    try:
        computed = complete_stages(result, stages, lambda: save_unlearn_checkpoint(model, result, args.save_dir, args.unlearn))
    except NonFiniteOutputs as bad:
        raise non_finite_outputs_error(record, args, bad, args.save_dir) from None
    if results_written(computed, args):
        readable = {
            **evaluation.paper_metrics(result),
            "accuracy": result["accuracy"],
            "SVC_MIA_forget_efficacy": result["SVC_MIA_forget_efficacy"],
            "SVC_MIA_training_privacy": result["SVC_MIA_training_privacy"],
            "weights": result["weights"],
            "unlearn_seconds": result["unlearn_seconds"],
            **{name: result[name] for name in record.reports if name in result},
            **({"calibration": result["calibration"]} if "calibration" in result else {}),
            "forget_set_size": int(len(forget_set.positions)),
            "forget_class": forget_set.whole_class,
            "scenario": kind,
            "device": str(device),
        }
        units = {"UA, RA, TA, MIA-Efficacy": "percent", "RTE": "minutes", "sparsity": "percent of conv weights"}
        write_results(result, readable, model, args, units)
    else:
        log.info("--resume: evaluation already complete; results unchanged")
    m = evaluation.paper_metrics(result)
    print(
        f"{args.unlearn}: UA {m['UA']:.2f}  MIA-Efficacy {m['MIA-Efficacy']:.2f}  RA {m['RA']:.2f}  TA {m['TA']:.2f}  "
        f"RTE {m['RTE']:.3f} min  (sparsity {pruner.sparsity(model):.2f}%)"
    )
    if "calibration" in result:
        print(calibration_line(result))
