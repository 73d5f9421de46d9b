"""Calibrated runs in a summary: what each calibration chose, what the other seeds then reached, and the curves.

A grid's "_calibrate" (workflow/sweep.py) makes one calibration task per method, model and
scenario (role "calibration" in its labels), whose result records every value it tried
(`calibration.steps`), and measured runs that reuse the value on other seeds
(`calibration.from`). scripts/summarize.py leaves the calibration runs out of its tables
(their seed chose the value, so their UA is not an independent measurement) and shows here:

- per calibration: the option, the target, the value chosen and the metric it gave on the
  calibration's own seed, and the mean metric the measured seeds reached at that value
  (out of sample), beside the target;
- trade-off curves (with --calibrate_curve: UA, RA and TA at every value tried): UA against
  RA and against TA, the models of one original model overlaid, with Retrain's point.
"""

import math
import os
from collections import defaultdict

import paths

GROUP = ("scenario", "method", "setting", "train_seed")  # one curve figure each; models overlaid
RETRAIN = "retrain"


def split_calibrations(rows):
    """(measured rows, calibration rows): the rows a sweep labelled role "calibration" go aside."""
    return [r for r in rows if r.get("role") != "calibration"], [r for r in rows if r.get("role") == "calibration"]


def calibration_key(row):
    return tuple(row.get(k) for k in (*GROUP, "model"))


def measured_at(calibration_row, rows):
    """The measured rows that reused this calibration's value (the same method, model, scenario and setting)."""
    key = calibration_key(calibration_row)
    return [r for r in rows if calibration_key(r) == key and (r.get("calibration") or {}).get("seed") is not None]


def mean_of(values):
    return sum(values) / len(values) if values else math.nan


def calibration_section(calibrations, rows, names):
    """Markdown: one row per calibration, sorted by scenario, method, original model and model."""
    if not calibrations:
        return ""
    lines = [
        "### Calibration",
        "",
        "Each value was chosen on a seed of its own (the calibration's, not among the measured seeds, which are the rows "
        "above); the measured UA is their mean at that value: an out-of-sample number, beside the target.",
        "",
        "| scenario | method | model | original model | option | target | range | chosen | on its seed | measured (runs) | steps | flags |",
        "|" + "---|" * 12,
    ]
    order = sorted(calibrations, key=lambda r: tuple(str(v) for v in (*calibration_key(r),)))
    for row in order:
        c = row["calibration"]
        measured = [r[c["metric"]] for r in measured_at(row, rows)]
        shown = f"{mean_of(measured):.2f} ({len(measured)})" if measured else "— (0)"
        method = names.get(row["method"], row["method"]) + (f" ({row['setting']})" if row["setting"] else "")
        low, high = c["range"]
        lines.append(
            f"| {row['scenario']} | {method} | {row['model']} | {original_model(row)} | {c['option']} | "
            f"{c['metric']} {c['target']:.2f} | {low:g}–{high:g} | {c['chosen']:.3g} | {c['chosen_metric']:.2f} (seed {c['seed']}) | "
            f"{shown} | {len(c['steps'])} | {', '.join(c.get('flags') or []) or '—'} |"
        )
    return "\n".join(lines) + "\n\n"


def original_model(row):
    return "—" if row.get("train_seed") is None else f"train seed {row['train_seed']}"


def curve_points(calibration_row):
    """[(value, {UA, RA, TA})] of the steps with recorded accuracies, by value."""
    steps = calibration_row["calibration"].get("steps", [])
    return sorted((s["value"], s["accuracies"]) for s in steps if s.get("accuracies"))


def retrain_point(rows, scenario, model, train_seed):
    """Mean UA, RA, TA of Retrain's runs on one model, or None."""
    runs = [r for r in rows if (r["method"], r["scenario"], r["model"], r.get("train_seed")) == (RETRAIN, scenario, model, train_seed)]
    return {m: mean_of([r[m] for r in runs]) for m in ("UA", "RA", "TA")} if runs else None


def curve_file(folder, scenario, method, setting, train_seed):
    parts = [scenario, method, *([setting] if setting else []), *([f"train_seed{train_seed}"] if train_seed is not None else [])]
    return os.path.join(folder, paths.slug("_".join(parts)) + ".png")


def plot_curves(calibrations, rows, folder, names):
    """One PNG per scenario, method (setting) and original model: UA against RA and TA over the
    values tried, one line per model, Retrain's point per model. Returns the files written."""
    groups = defaultdict(list)
    for row in calibrations:
        if curve_points(row):
            groups[tuple(row.get(k) for k in GROUP)].append(row)
    if not groups:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    written = []
    for (scenario, method, setting, train_seed), members in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        for i, row in enumerate(sorted(members, key=lambda r: (r["model"] != "dense", r["model"]))):
            colour = f"C{i}"
            points = curve_points(row)
            chosen = row["calibration"]["chosen"]
            for ax, other in zip(axes, ("RA", "TA")):
                ax.plot([p["UA"] for _, p in points], [p[other] for _, p in points], "o-", color=colour, label=row["model"], ms=4)
                picked = [p for v, p in points if v == chosen]
                if picked:
                    ax.plot(picked[0]["UA"], picked[0][other], "*", color=colour, ms=12)
            reference = retrain_point(rows, scenario, row["model"], train_seed)
            if reference:
                for ax, other in zip(axes, ("RA", "TA")):
                    ax.plot(reference["UA"], reference[other], "s", color=colour, mfc="none", ms=9, label=f"Retrain ({row['model']})")
        name = names.get(method, method) + (f" ({setting})" if setting else "")
        for ax, other in zip(axes, ("RA", "TA")):
            ax.set_xlabel("UA (%)")
            ax.set_ylabel(f"{other} (%)")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{name}, {scenario} forgetting{'' if train_seed is None else f', train seed {train_seed}'}: values tried (★ chosen)")
        fig.tight_layout()
        path = curve_file(folder, scenario, method, setting, train_seed)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
