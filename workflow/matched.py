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
from workflow.methods import ORIGINAL_METHOD, REFERENCE_METHOD, row_name

GROUP = ("scenario", "method", "setting", "train_seed")  # one curve figure each; models overlaid


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


def calibration_section(calibrations, rows):
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
        method = row_name(row["method"], row["setting"])
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
    key = (REFERENCE_METHOD, scenario, model, train_seed)
    runs = [r for r in rows if (r["method"], r["scenario"], r["model"], r.get("train_seed")) == key]
    return {m: mean_of([r[m] for r in runs]) for m in ("UA", "RA", "TA")} if runs else None


def curve_file(folder, scenario, method, setting, train_seed):
    parts = [scenario, method, *([setting] if setting else []), *([f"train_seed{train_seed}"] if train_seed is not None else [])]
    return os.path.join(folder, paths.slug("_".join(parts)) + ".png")


def plot_curves(calibrations, rows, folder):
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
        name = row_name(method, setting)
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


# ---------------------------------------------------------------- the matched comparison (a grid's "matched")


def endpoint(run, reference):
    """The primary endpoint: the mean of the RA and TA gaps to Retrain (what the matched forgetting cost)."""
    return (abs(run["RA"] - reference["RA"]) + abs(run["TA"] - reference["TA"])) / 2


def secondary(run, reference):
    """The secondary endpoint: the MIA-Efficacy gap to Retrain."""
    return abs(run["MIA-Efficacy"] - reference["MIA-Efficacy"])


ENDPOINTS = (("primary: mean of the RA and TA gaps", endpoint), ("secondary: MIA-Efficacy gap", secondary))


def per_model(rows, measure):
    """{(scenario, model, method, setting): {train_seed: measure(the method's seed-averaged metrics, the mean of
    that original model's Retrain runs)}} for every method but the Original and Retrain."""
    from workflow import stats

    groups = stats.by_original_model(rows)
    values = {}
    for key, of_model in groups.items():
        if key[2] in (ORIGINAL_METHOD, REFERENCE_METHOD):
            continue
        reference = stats.reference_key(groups, key[0], key[1])
        if reference is None:
            continue
        values[key] = {
            seed: measure(stats.mean_metrics(runs), stats.mean_metrics(groups[reference][seed]))
            for seed, runs in of_model.items()
            if seed in groups[reference]
        }
    return values


def floors(rows, measure=endpoint):
    """{(scenario, model): {"same initialisation": [...], "independent initialisations": [...]}}: `measure`
    between two Retrain runs of one original model (same train seed: the same initialisation, other data
    order), and between Retrain runs of two original models with the same unlearning seed (the same retain
    set, other initialisations): the distance between two exact unlearnings."""
    from itertools import combinations

    retrains = defaultdict(list)
    for r in rows:
        if r["method"] == REFERENCE_METHOD and not r["setting"]:
            retrains[r["scenario"], r["model"]].append(r)
    found = {}
    for key, runs in retrains.items():
        same = [measure(a, b) for a, b in combinations(runs, 2) if a["train_seed"] == b["train_seed"]]
        independent = [measure(a, b) for a, b in combinations(runs, 2) if a["train_seed"] != b["train_seed"] and a["seed"] == b["seed"]]
        found[key] = {"same initialisation": same, "independent initialisations": independent}
    return found


def tost(comparison, margin):
    """Two one-sided paired t-tests of |mean difference| < margin: the larger of their p-values (1 when untestable)."""
    from scipy import stats

    if comparison.get("missing") or comparison["n"] < 2:
        return 1.0
    n, mean, sd = comparison["n"], comparison["mean"], comparison["sd"]
    if sd == 0:
        return 0.0 if abs(mean) < margin else 1.0
    se = sd / math.sqrt(n)
    above_low = 1 - stats.t.cdf((mean + margin) / se, n - 1)  # H0: difference <= -margin
    below_high = stats.t.cdf((mean - margin) / se, n - 1)  # H0: difference >= +margin
    return float(max(above_low, below_high))


def minimum_detectable(sd, n, level, power=0.8):
    """The smallest true paired difference a two-sided t-test at `level` (per comparison) finds with `power`,
    given the differences' standard deviation: solved on the noncentral t; None when untestable."""
    from scipy import optimize, stats

    if n < 2 or sd is None or not math.isfinite(sd):
        return None
    if sd == 0:
        return 0.0
    df, critical = n - 1, stats.t.ppf(1 - level / 2, n - 1)

    def shortfall(delta):
        shift = delta * math.sqrt(n) / sd
        upper, lower = stats.nct.sf(critical, df, shift), stats.nct.cdf(-critical, df, shift)
        return (upper if math.isfinite(upper) else 1.0) + (lower if math.isfinite(lower) else 0.0) - power

    high = sd
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high))


def matched_family(declared):
    """[(label, first key, second key)] as the grid declares them: every calibrated method (each setting)
    sparse − dense per scenario, and each declared method pair per model and scenario (each setting of
    the second method)."""
    models = declared.get("models") or []
    settings_of = declared.get("grid_settings") or {}
    calibrated = declared.get("calibrated") or []
    family = []

    def name(method, setting):
        return row_name(method, setting)

    for scenario in declared.get("scenarios") or []:
        if len(models) == 2:
            for method in calibrated:
                for setting in settings_of.get(method, [""]):
                    keys = [(scenario, model, method, setting) for model in models]
                    family.append((f"{name(method, setting)}: {models[1]} − {models[0]}", *keys))
        for first, second in declared.get("methods") or []:
            for setting in settings_of.get(second, [""]):
                for model in models:
                    label = f"{name(second, setting)} − {name(first, '')}, {model}"
                    family.append((label, (scenario, model, first, ""), (scenario, model, second, setting)))
    return family


def closer(c):
    """Who the difference favours: "95% sparse closer", "l1-sparse (alpha=0.001) closer", ..."""
    winner = c["second"] if c["mean"] < 0 else c["first"]
    if c["first"][1] != c["second"][1]:
        return f"{winner[1]} closer"
    return row_name(winner[2], winner[3]) + " closer"


def verdict(c, margin):
    """What a comparison shows, in words its corrected intervals allow."""
    if c.get("missing"):
        return "not tested (no results on two original models)"
    equivalent = c["p_tost_holm"] < ALPHA
    if c["verdict"] is not None:
        return f"different: {closer(c)}" + (f" (yet within ±{margin:g})" if equivalent else "")
    return f"equivalent within ±{margin:g}" if equivalent else "inconclusive"


ALPHA = 0.05


def matched_comparison(rows, declared):
    """Markdown: matched UA per method and model, then per endpoint the paired differences across original
    models (Holm), TOST against the declared margin, the minimum detectable differences, and both floors."""
    from workflow import stats

    spec = declared.get("matched") or {}
    margin, power = float(spec.get("margin", 2.0)), float(spec.get("power", 0.8))
    family_spec = matched_family(declared)
    if not family_spec:
        return ""
    n_models = len({r["train_seed"] for r in rows})
    lines = ["", f"### Matched forgetting across original models ({n_models} dense / sparse pairs)", ""]
    lines += matched_ua_table(rows)
    for title, measure in ENDPOINTS:
        values = per_model(rows, measure)
        family = stats.compare(values, family_spec)
        for c, p in zip(family, stats.holm([tost(c, margin) for c in family])):
            c["p_tost"], c["p_tost_holm"] = tost(c, margin), p
            c["mdd"] = None if c.get("missing") else minimum_detectable(c["sd"], c["n"], ALPHA / len(family), power)
        lines += ["", f"**{title}** (per original model: seeds averaged, against the mean of its Retrain runs; lower is closer)", ""]
        lines += endpoint_table(values, family_spec)
        lines += ["", "| comparison | mean difference | Holm-corrected interval | p (Holm) | TOST p (Holm), ±" + f"{margin:g} | "
                  f"min. detectable ({100 * power:.0f}% power) | what it shows |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for c in family:
            if c.get("missing"):
                lines.append(f"| {c['label']} | — | — | — | — | — | {verdict(c, margin)} |")
                continue
            mdd = "—" if c["mdd"] is None else f"{c['mdd']:.2f}"
            lines.append(
                f"| {c['label']} | {c['mean']:+.2f} (n={c['n']}) | [{c['low']:+.2f}, {c['high']:+.2f}] ({100 * c['level']:.1f}%) | "
                f"{c['p_holm']:.3f} | {c['p_tost_holm']:.3f} | {mdd} | {verdict(c, margin)} |"
            )
        lines += floor_lines(rows, measure)
    lines += [
        "",
        f"Each difference is the second term minus the first, paired by original model (negative: the second is closer "
        f"to Retrain). Holm's correction runs over the {len(family_spec)} comparisons the grid declares, for the "
        f"differences and, separately, for the equivalence tests (TOST: both one-sided paired t-tests against ±{margin:g} "
        f'points, the margin the grid declares). A comparison is "different" when its corrected interval excludes 0, '
        f'"equivalent" when its corrected TOST p is below {ALPHA}, and "inconclusive" otherwise. The minimum detectable '
        f"difference is the true difference a two-sided paired t-test at {ALPHA}/{len(family_spec)} (Holm's first step) "
        f"would find with {100 * power:.0f}% power, given the observed spread of the differences and n.",
    ]
    return "\n".join(lines) + "\n"


def matched_ua_table(rows):
    """Lines: per scenario, method and model, the measured UA (mean over original models of the seed means) beside
    the target (the mean over original models of Retrain's UA) and the mean |UA − target| per original model."""
    from workflow import stats

    groups = stats.by_original_model(rows)
    lines = ["| scenario | method | model | measured UA | Retrain's UA (target) | mean distance to target | original models |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for key in sorted(groups, key=lambda k: (k[0], k[2] != ORIGINAL_METHOD, k[2] != REFERENCE_METHOD, k[2], k[3], k[1] != "dense", k[1])):
        scenario, model, method, setting = key
        reference = stats.reference_key(groups, scenario, model)
        if method in (ORIGINAL_METHOD, REFERENCE_METHOD) or reference is None:
            continue
        seeds = [s for s in groups[key] if s in groups[reference]]
        if not seeds:
            continue
        ua = {s: stats.mean_metrics(groups[key][s])["UA"] for s in seeds}
        target = {s: stats.mean_metrics(groups[reference][s])["UA"] for s in seeds}
        name = row_name(method, setting)
        lines.append(
            f"| {scenario} | {name} | {model} | {mean_of(list(ua.values())):.2f} | {mean_of(list(target.values())):.2f} | "
            f"{mean_of([abs(ua[s] - target[s]) for s in seeds]):.2f} | {len(seeds)} |"
        )
    return lines


def endpoint_table(values, family_spec):
    """Lines: the endpoint per compared method and model, mean [95% t interval] over original models."""
    from workflow import stats

    keys = sorted({k for _, first, second in family_spec for k in (first, second)}, key=lambda k: (k[0], k[2], k[3], k[1] != "dense", k[1]))
    lines = ["| scenario | method | model | endpoint | original models |", "|---|---|---|---|---|"]
    for key in keys:
        found = values.get(key)
        if not found:
            continue
        mean, half, n = stats.summary(list(found.values()))
        shown = f"{mean:.2f}" + (f" [{mean - half:.2f}, {mean + half:.2f}]" if half is not None else "")
        name = row_name(key[2], key[3])
        lines.append(f"| {key[0]} | {name} | {key[1]} | {shown} | {n} |")
    return lines


def floor_lines(rows, measure):
    """Lines: the endpoint between two exact unlearnings, from the same and from independent initialisations."""
    found = floors(rows, measure)
    if not found:
        return []
    lines = ["", "| noise floor (Retrain vs Retrain) | scenario | model | mean | pairs |", "|---|---|---|---|---|"]
    for (scenario, model), kinds in sorted(found.items()):
        for kind, values in kinds.items():
            if values:
                lines.append(f"| {kind} | {scenario} | {model} | {mean_of(values):.2f} | {len(values)} |")
    return lines
