"""The comparisons a study reads its verdict from: seed by seed (one original model), across
original models with Holm (workflow/stats.py), and another exact reference against Retrain."""

import json
import os
from collections import defaultdict

import paths
from workflow.methods import DEFAULT_PAIRS, EXACT_REFERENCES, NAMES, NOT_COMPARED, ORIGINAL_METHOD, REFERENCE_METHOD, method_order, row_name
from workflow.stats import METRICS, avg_gap
from workflow.sweep import settings as grid_settings
from workflow.table import mean_std


def per_seed_gaps(rows):
    """{(scenario, model, method, setting): {seed: Avg. Gap to that seed's own Retrain}}."""
    retrain = {(r["scenario"], r["model"], r["seed"]): r for r in rows if r["method"] == REFERENCE_METHOD}
    gaps = defaultdict(dict)
    for r in rows:
        reference = retrain.get((r["scenario"], r["model"], r["seed"]))
        if reference is not None and r["method"] not in (ORIGINAL_METHOD, REFERENCE_METHOD):
            gaps[(r["scenario"], r["model"], r["method"], r["setting"])][r["seed"]] = avg_gap(r, reference)
    return gaps


def paired(first, second):
    """second - first over the seeds both have: (mean, std, how many seeds second is lower, n) or None."""
    seeds = sorted(set(first) & set(second), key=str)
    if len(seeds) < 2:
        return None
    mean, std = mean_std([second[s] - first[s] for s in seeds])
    return mean, std, sum(second[s] < first[s] for s in seeds), len(seeds)


def seed_comparisons(rows, table):
    """Markdown answering the paper's two questions seed by seed, when there are several seeds.

    Per scenario and method: each model's Avg. Gap computed per seed (against that seed's
    Retrain), mean ± std, and the paired difference between the two models (the sparser
    minus the denser); then, per model, l1-sparse minus FT. Empty with fewer than two seeds
    or other than two models.
    """
    gaps = per_seed_gaps(rows)
    kept = {key: gaps[key] for key in table if key in gaps}
    if not any(len(v) > 1 for v in kept.values()):
        return ""

    def summary(per_seed):
        mean, std = mean_std(list(per_seed.values()))
        return f"{mean:.2f}±{std:.2f}"

    def difference(first, second):
        stats = paired(first, second)
        return "n/a" if stats is None else f"{stats[0]:+.2f}±{stats[1]:.2f} ({stats[2]}/{stats[3]})"

    lines = []
    for scenario in sorted({k[0] for k in kept}):
        models = sorted({k[1] for k in kept if k[0] == scenario}, key=lambda m: next(e["sparsity"] for k, e in table.items() if k[1] == m))
        if len(models) != 2:
            continue
        lines += ["", f"**{scenario} forgetting**", ""]
        lines += [f"| method | {models[0]} | {models[1]} | {models[1]} − {models[0]} |", "|---|---|---|---|"]
        rows_of = defaultdict(dict)  # method -> (model, setting) -> per-seed gaps
        for (sc, model, method, setting), per_seed in kept.items():
            if sc == scenario:
                rows_of[method][(model, setting)] = per_seed
        for method in sorted(rows_of, key=method_order):
            entries = rows_of[method]
            settings = {model: [st for (mo, st) in entries if mo == model] for model in models}
            if all(len(settings[m]) == 1 for m in models):  # one setting per model (e.g. --best): pair them
                pairs = [(NAMES.get(method, method), [entries[(m, settings[m][0])] for m in models])]
            else:  # several settings: pair equal settings
                common = sorted(set(settings[models[0]]) & set(settings[models[1]]))
                pairs = [(row_name(method, st), [entries[(m, st)] for m in models]) for st in common]
            for name, (first, second) in pairs:
                lines.append(f"| {name} | {summary(first)} | {summary(second)} | {difference(first, second)} |")
        for base, variant in DEFAULT_PAIRS:  # each method against the one it builds on (l1-sparse − FT)
            first = {m: v for (sc, m, me, _), v in kept.items() if sc == scenario and me == base}
            second = {m: v for (sc, m, me, _), v in kept.items() if sc == scenario and me == variant}
            if len(first) == len(second) == 2 and set(first) == set(models):
                lines += ["", f"| | {models[0]} | {models[1]} |", "|---|---|---|"]
                label = f"{NAMES.get(variant, variant)} − {NAMES.get(base, base)}"
                lines.append(f"| {label} | " + " | ".join(difference(first[m], second[m]) for m in models) + " |")
    if not lines:
        return ""
    intro = ("Each seed's Avg. Gap against the same seed's Retrain, mean ± std over seeds; a difference is paired "
             "by seed, in brackets on how many seeds it is negative (the second term smaller).")  # fmt: skip
    return "\n".join(["", "### Avg. Gap seed by seed", "", intro, *lines]) + "\n"


def declared_comparisons(run_dir):
    """The grid's "comparisons" ({"models": [first, second], "methods": [[first, second], ...]}), or {}.

    The grid is RUN_DIR/grid.json (a collected study keeps it there) or the one sweep.json names.
    """
    candidates = [os.path.join(run_dir, paths.GRID_COPY)]
    try:
        with open(os.path.join(run_dir, paths.SWEEP_MANIFEST)) as f:
            candidates.append(json.load(f)["grid"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    for path in candidates:
        try:
            with open(path) as f:
                grid = json.load(f)
            declared = dict(grid.get("comparisons") or {})
            if declared:  # the family is fixed by the grid, whatever has landed: its methods, settings and scenarios too
                methods = grid.get("methods") or {}
                declared.setdefault("grid_methods", list(methods))
                declared.setdefault("scenarios", list(grid.get("scenarios") or {}))
                declared.setdefault("grid_settings", {m: [label for label, _ in grid_settings(o)] for m, o in methods.items()})
                declared.setdefault("calibrated", [m for m, o in methods.items() if "_calibrate" in o])
                if grid.get("matched"):
                    declared["matched"] = grid["matched"]
            return declared
        except (OSError, ValueError, AttributeError):
            continue
    return {}


def comparison_family(table, declared):
    """[(label, first key, second key)]: the comparisons declared in advance, or by default every
    method's sparser − denser model and l1-sparse − FT on each model, in every scenario."""
    scenarios = sorted(set(declared.get("scenarios") or []) | {k[0] for k in table})
    models = declared.get("models") or sorted(
        {k[1] for k in table}, key=lambda m: next(e["sparsity"] for k, e in table.items() if k[1] == m)
    )
    method_pairs = declared.get("methods") or DEFAULT_PAIRS
    family = []
    for scenario in scenarios:
        if len(models) == 2:
            methods = {(k[2], k[3]) for k in table if k[0] == scenario and k[2] not in NOT_COMPARED}
            for method in declared.get("grid_methods") or []:  # declared, even before (or without) its results
                if method not in NOT_COMPARED and not any(m == method for m, _ in methods):
                    methods.add((method, ""))
            methods = sorted(methods, key=lambda ms: (method_order(ms[0]), ms[1]))
            for method, setting in methods:
                keys = [(scenario, model, method, setting) for model in models]
                family.append((f"{row_name(method, setting)}: {models[1]} − {models[0]}", *keys))
        for first, second in method_pairs:
            present = {k[2] for k in table if k[0] == scenario}
            if not declared.get("methods") and not {first, second} <= present:
                continue  # the default pair, for a grid that declares none: only where both methods ran
            for setting in (declared.get("grid_settings") or {}).get(second, [""]):  # each setting the grid gives it
                for model in models:
                    family.append(
                        (f"{row_name(second, setting)} − {NAMES.get(first, first)}, {model}", (scenario, model, first, ""),
                         (scenario, model, second, setting))
                    )  # fmt: skip
    return family


def original_model_comparisons(rows, table, declared):
    """Markdown: the study's verdict across independent original models (workflow/stats.py).

    Per scenario: each method's Avg. Gap per original model (its seeds averaged first, against
    the mean of that model's Retrain runs), mean and 95% interval over the models; the noise
    floor (Retrain against Retrain); the paired differences with Holm-corrected intervals and
    what each shows.
    """
    from workflow import stats

    gaps = stats.per_model_gaps(rows, no_gap=tuple(NOT_COMPARED))
    floors = stats.noise_floor(rows)
    sensitive = stats.seed_sensitivity(rows)
    family = stats.compare(gaps, comparison_family(table, declared))
    n_models = len({r["train_seed"] for r in rows})
    lines = ["", f"### Across original models ({n_models} independently trained dense / sparse pairs)", ""]
    lines.append(
        "Per original model, each method's metrics averaged over its unlearning seeds, then its Avg. Gap to the mean of "
        "that model's Retrain runs; the mean over the original models, its 95% t interval in brackets, and n. Noise floor: "
        "the Avg. Gap between two Retrain runs of the same original model. ≈R marks a method whose runs lie as close to "
        "Retrain's runs as those lie to each other (each run against a Retrain run of another unlearning seed, on the same "
        "original models: the floor's own footing; a comparison of means, not a test). "
        r"\* marks a method whose runs did not change with the unlearning seed (one run per model, repeated)."
    )

    def cell(values, key=None):
        if not values:
            return "n/a"
        mean, half, n = stats.summary(list(values.values()))
        text = f"{mean:.2f}" + (f" [{mean - half:.2f}, {mean + half:.2f}]" if half is not None else "") + f" (n={n})"
        if key is not None and stats.indistinguishable_from_retrain(rows, key, floors):
            text += " ≈R"
        if key is not None and sensitive.get(key) is False:
            text += " \\*"
        return text

    for scenario in sorted({k[0] for k in table}):
        models = sorted({k[1] for k in table if k[0] == scenario}, key=lambda m: next(e["sparsity"] for k, e in table.items() if k[1] == m))
        lines += ["", f"**{scenario} forgetting**", "", "| method | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
        lines.append("| Retrain vs Retrain (noise floor) | " + " | ".join(cell(floors.get((scenario, m), {})) for m in models) + " |")
        methods = sorted({(k[2], k[3]) for k in gaps if k[0] == scenario}, key=lambda ms: (method_order(ms[0]), ms[1]))
        for method, setting in methods:
            cells = [cell(gaps.get((scenario, m, method, setting), {}), (scenario, m, method, setting)) for m in models]
            lines.append(f"| {row_name(method, setting)} | " + " | ".join(cells) + " |")
        chosen = [c for c in family if c["first"][0] == scenario]
        if chosen:
            lines += [
                "",
                "| comparison | mean difference | Holm-corrected interval | p | p (Holm) | what it shows |",
                "|---|---|---|---|---|---|",
            ]
            for c in chosen:
                if c.get("missing"):
                    lines.append(f"| {c['label']} | no results on two original models | — | — | — | not tested (counted as not rejected) |")
                    continue
                lines.append(
                    f"| {c['label']} | {c['mean']:+.2f} (n={c['n']}) | [{c['low']:+.2f}, {c['high']:+.2f}] ({100 * c['level']:.1f}%) | "
                    f"{c['p']:.3f} | {c['p_holm']:.3f} | {verdict_words(c)} |"
                )
    if family:
        lines += ["", f"Each difference is paired by original model (second term minus first: negative means the second is closer "
                  f"to Retrain). Holm's correction runs over the {len(family)} comparisons "
                  f"{'the grid declares' if declared else 'of every method across the two models and of l1-sparse against FT'}; "
                  "an interval is at the confidence level Holm's step gives its rank (it excludes 0 exactly when Holm's test "
                  "rejects; these are not simultaneous intervals), and a difference is a finding only when its corrected "
                  "interval excludes 0. A declared comparison without results stays in the family, never rejected."]  # fmt: skip
    for method in EXACT_REFERENCES:
        lines += reference_comparison(rows, method)
    return "\n".join(lines) + "\n"


def reference_comparison(rows, method):
    """Markdown lines: another exact reference (Retrain (pipeline)) against Retrain under the original mask, across original models."""
    from workflow import stats

    found = stats.reference_against_retrain(rows, method)
    if not found:
        return []
    name = NAMES.get(method, method)
    lines = [
        "",
        f"**{name} against Retrain under the original mask**",
        "",
        f"Per original model, {name}'s metrics and Retrain's (each averaged over its runs) and their difference; mean and "
        f"95% t interval over the original models. Last row: {name}'s Avg. Gap to each Retrain run of another "
        f"unlearning seed against the noise floor (Retrain run to Retrain run), paired by original model: above 0, "
        f"{name} lies further from Retrain than Retrain from itself. One question of its own: these intervals are not "
        "in the Holm family above.",
    ]

    def difference(mean, low, high, n):
        return f"{mean:+.2f} (n={n})" if low is None else f"{mean:+.2f} [{low:+.2f}, {high:+.2f}] (n={n})"

    for (scenario, model, _, setting), found_here in sorted(found.items()):
        label = row_name(method, setting)
        lines += ["", f"{scenario} forgetting, {model}:", "", f"| metric | {label} | Retrain | difference |", "|---|---|---|---|"]
        for metric in METRICS:
            ours, theirs, diff = found_here["metrics"][metric]
            lines.append(f"| {metric} | {ours:.2f} | {theirs:.2f} | {difference(*diff)} |")
        if found_here["gap"] is not None:
            mean, low, high, n = found_here["gap"]
            ours, floor = (sum(v) / len(v) for v in (found_here["reference_gap"], found_here["floor"]))
            if low is None or low <= 0 <= high:
                words = "no difference found"
            else:
                words = "further from Retrain than the noise floor" if low > 0 else "closer to Retrain than the noise floor"
            lines.append(f"| Avg. Gap, run to run | {ours:.2f} | {floor:.2f} (noise floor) | {difference(mean, low, high, n)}: {words} |")
    return lines


def verdict_words(comparison):
    """ "sparse closer", "dense closer", "l1-sparse closer", ... or "no difference found"."""
    if comparison["verdict"] is None:
        return "no difference found"
    label = comparison["label"]
    if ": " in label:  # "<method>: <second model> − <first model>"
        first, second = label.split(": ", 1)[1].split(" − ")[1], label.split(": ", 1)[1].split(" − ")[0]
    else:  # "<second method> − <first method>, <model>"
        second, first = label.split(", ")[0].split(" − ")
    return f"{second} closer" if comparison["verdict"] == "second closer" else f"{first} closer"
