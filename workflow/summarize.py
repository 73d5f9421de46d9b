"""The paper's table from a folder of unlearning results.

    python scripts/summarize.py RUN_DIR [--out FILE] [--best [--best-by mean|worst] [--overrides FILE]]

Reads every `*eval_result.json` under RUN_DIR (main_forget.py's readable results; when
RUN_DIR holds a sweep's sweep.json, the tasks it lists name the runs to expect; a
task.json beside a result gives its labels, so copied results keep them) and prints, per
scenario, method (and setting, when a grid gave an option as a list) and model (dense /
sparse), the mean ± std over seeds of UA, MIA-Efficacy, RA and TA with the gap to
Retrain (same scenario and model) in brackets, the average gap, RTE in minutes, and the
MIA attack's own accuracy on held-out members vs non-members (an MIA-Efficacy cell whose
attack is within CHANCE_MARGIN points of 50% is marked: there the attack cannot tell).
`raw` (no unlearning) is the "Original" row, shown first and without gaps: it is the
starting point, not a contender. A setting shows in its row's name, `FF (alpha=1e-07)`;
--best keeps, per method, model and scenario, the setting with the smallest average gap
and says under the table what it selected (with several original models, by the mean of
its per-model Avg. Gaps, or with --best-by worst by its worst); --overrides FILE writes those choices as a
grid's "overrides", to fix them for further seeds. Writes FILE (Markdown, default
RUN_DIR/summary.md) and beside it FILE.csv and FILE.png (each metric, dense vs sparse per
method). Calibration runs (a grid's "_calibrate") are left out of the tables and listed in
their own section, with their trade-off curves in FILE_curves/ (workflow/matched.py).

A missing or unreadable result file is named on stderr and left out; the rest is summarised.
"""

import argparse
import csv
import glob
import json
import math
import os
import sys
from collections import defaultdict

import paths
from unlearn import METHODS
from workflow import matched
from workflow.sweep import settings as grid_settings

METRICS = ("UA", "MIA-Efficacy", "RA", "TA")
# Every method's row name, in the registry's order: the Original, the paper's six, the
# original code's other methods, then the methods that came after the paper.
NAMES = {name: record.paper_name for name, record in METHODS.items()}
NO_GAP = {"raw"}  # rows shown without a gap to Retrain
# Not in the across-model comparisons: the start, the reference, and another reference with its own section.
NOT_COMPARED = NO_GAP | {"retrain", "retrain_pipeline"}
# The shadow attack's own accuracy on members and non-members it was not fit on (the
# training-privacy attack's confidence score); within this many points of 50% it cannot
# tell members from non-members, and an MIA-Efficacy cell is marked.
CHANCE_MARGIN = 5.0
CHANCE_MARK = "†"


def model_label(result):
    sparsity = float(result.get("sparsity") or 0.0)
    return "dense" if sparsity == 0 else f"{sparsity:.0f}% sparse"


def task_labels(result_path):
    """The labels sweep.py left in task.json beside a result, or {}."""
    try:
        with open(os.path.join(os.path.dirname(result_path), paths.TASK_FILE)) as f:
            return json.load(f).get("labels") or {}
    except (OSError, ValueError, AttributeError):
        return {}


def read_results(run_dir):
    """(list of results with their labels, list of problems) for every result under run_dir."""
    expected = {}
    manifest = os.path.join(run_dir, paths.SWEEP_MANIFEST)
    problems = []
    if os.path.isfile(manifest):
        try:
            with open(manifest) as f:
                tasks = json.load(f)["tasks"]
            expected = {os.path.abspath(t["result"]): t for t in tasks if t.get("labels")}
        except (OSError, ValueError, KeyError, TypeError) as err:
            problems.append(f"{manifest}: unreadable sweep manifest ({err}); summarising the result files found")
    found = {os.path.abspath(p) for p in glob.glob(os.path.join(glob.escape(run_dir), "**", paths.EVAL_JSON_GLOB), recursive=True)}
    rows = []
    for path in sorted(found | set(expected)):
        task = expected.get(path)
        if path not in found:
            problems.append(f"{path}: missing ({task['name']} has not finished or failed)")
            continue
        try:
            with open(path) as f:
                result = json.load(f)
            values = {m: float(result[m]) for m in (*METRICS, "RTE")}
        except (OSError, ValueError, KeyError, TypeError) as err:
            problems.append(f"{path}: unreadable ({type(err).__name__}: {err}); left out")
            continue
        if not all(math.isfinite(v) for v in values.values()):
            problems.append(f"{path}: holds a non-finite metric; left out")
            continue
        labels = (task or {}).get("labels") or task_labels(path)
        values["attack"] = held_out_attack_accuracy(result)
        rows.append(
            {
                "scenario": labels.get("scenario") or result.get("scenario", "?"),
                "method": result.get("method") or labels.get("method", "?"),
                "setting": labels.get("setting", ""),
                "options": setting_options(labels, result),
                "model": labels.get("model") or model_label(result),
                "sparsity": float(result.get("sparsity") or 0.0),
                "seed": (result.get("args") or {}).get("seed", labels.get("seed")),
                "train_seed": labels.get("train_seed"),
                "role": labels.get("role"),
                "calibration": result.get("calibration"),
                **values,
            }
        )
    return rows, problems


def held_out_attack_accuracy(result):
    """The confidence attack's balanced accuracy (percent) on held-out retain vs test samples, or None.

    main_forget.py's training-privacy evaluation fits the shadow SVC on half of the retain
    and test samples and scores the other halves: how well the attack behind MIA-Efficacy
    separates members from non-members at all.
    """
    try:
        value = 100.0 * float(result["SVC_MIA_training_privacy"]["confidence"])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def mean_std(values):
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def aggregate(rows):
    """One entry per (scenario, model, method, setting): mean/std per metric, gaps to Retrain, n.

    The reference is the same scenario and model's Retrain (its one setting, if it has several
    the one without a setting of its own).
    """
    groups = defaultdict(list)
    for r in rows:
        groups[(r["scenario"], r["model"], r["method"], r["setting"])].append(r)
    table = {}
    for key, members in groups.items():
        entry = {"n": len(members), "sparsity": members[0]["sparsity"], "options": members[0]["options"]}
        for m in (*METRICS, "RTE"):
            entry[m] = mean_std([r[m] for r in members])
        attack = [r["attack"] for r in members if r.get("attack") is not None]
        entry["attack"] = mean_std(attack) if attack else None
        table[key] = entry
    for (scenario, model, method, _), entry in table.items():
        reference = retrain_of(table, scenario, model) if method not in NO_GAP else None
        entry["gap"] = {m: abs(entry[m][0] - reference[m][0]) for m in METRICS} if reference else None
        entry["avg_gap"] = sum(entry["gap"].values()) / len(METRICS) if reference else None
    for key, members in groups.items():
        table[key]["tow"] = tug_of_war(members, rows) if key[2] not in NO_GAP else None
    return table


def tug_of_war(members, rows):
    """(mean, 95% t half-width or None, n) of ToW over the runs (kairanzhao/RUM, `surgical_plugins/analysis.py`):
    per run (1 - |UA gap| / 100) * (1 - |RA gap| / 100) * (1 - |TA gap| / 100), each gap to the mean of the Retrain
    runs of the same scenario, model and original model (the forget accuracy's gap is UA's); None without Retrain runs."""
    from scipy import stats

    values = []
    for run in members:
        retrains = [r for r in rows if r["method"] == "retrain" and not r["setting"] and
                    (r["scenario"], r["model"], r.get("train_seed")) == (run["scenario"], run["model"], run.get("train_seed"))]  # fmt: skip
        if not retrains:
            return None
        tow = 1.0
        for m in ("UA", "RA", "TA"):
            tow *= 1 - abs(run[m] - sum(r[m] for r in retrains) / len(retrains)) / 100
        values.append(tow)
    mean, n = sum(values) / len(values), len(values)
    if n < 2:
        return mean, None, n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n), n


def retrain_of(table, scenario, model):
    candidates = {setting: e for (sc, mo, me, setting), e in table.items() if (sc, mo, me) == (scenario, model, "retrain")}
    if len(candidates) == 1:
        return next(iter(candidates.values()))
    return candidates.get("")


def keep_best(table, scores=None):
    """Per method, model and scenario, the setting with the smallest average gap.

    `scores` ({key: score}, from best_scores when the runs come from several original models)
    replaces the table's Avg. Gap of pooled runs; a key without a score is no candidate.
    Returns (the table of the kept rows, lines saying what was chosen over what, the choices
    as a grid's "overrides").
    """
    by_group = defaultdict(dict)
    for (scenario, model, method, setting), entry in table.items():
        by_group[(scenario, model, method)][setting] = entry
    kept, notes, overrides = {}, [], []
    for (scenario, model, method), entries in sorted(by_group.items(), key=lambda kv: (kv[0][0], method_order(kv[0][2]), kv[0][1])):
        if scores is None:
            scored = {s: e["avg_gap"] for s, e in entries.items() if e["avg_gap"] is not None}
        else:
            scored = {s: scores[(scenario, model, method, s)] for s in entries if (scenario, model, method, s) in scores}
        best = min(scored, key=scored.get) if len(scored) > 1 else None
        for setting, entry in entries.items():
            if best is None or setting == best:
                kept[(scenario, model, method, setting)] = entry
        if best is not None:
            overrides.append({"model": model, "scenario": scenario, "method": method, "options": entries[best]["options"]})
            others = ", ".join(f"{s} ({scored[s]:.2f})" for s in sorted(scored, key=scored.get) if s != best)
            edges = at_the_edge(entries[best]["options"], [entries[s]["options"] for s in scored])
            edge_note = f" — AT THE EDGE of the range searched for {'; '.join(edges)}: widen the search" if edges else ""
            notes.append(
                f"{NAMES.get(method, method)}, {model}, {scenario}: selected {best} (Avg. Gap {scored[best]:.2f}) over {others}{edge_note}"
            )
    return kept, notes, overrides


def best_scores(rows, by="mean"):
    """{key: the mean (by="mean") or the largest (by="worst") over the original models of the key's
    Avg. Gap to that model's Retrain}, for the keys with a gap on every original model of their
    scenario and model: with several original models, a setting is judged by how it does on each,
    so that one that collapses on some model cannot hide behind means pooled over models ("worst":
    the setting whose worst model is best)."""
    from workflow import stats

    gaps = stats.per_model_gaps(rows)
    models = defaultdict(set)
    for (scenario, model, _, _), per_model in gaps.items():
        models[scenario, model] |= set(per_model)
    score = max if by == "worst" else lambda values: sum(values) / len(values)
    return {key: score(list(per_model.values())) for key, per_model in gaps.items() if set(per_model) == models[key[:2]]}


def at_the_edge(chosen, tried):
    """For each option the settings vary, 'alpha (1e-05 is the largest of 1e-09..1e-05)' when the
    chosen value is the smallest or largest value tried: the best may lie outside the range."""
    edges = []
    for key, value in chosen.items():
        values = sorted({options[key] for options in tried if isinstance(options.get(key), (int, float))})
        if len(values) < 2 or not isinstance(value, (int, float)) or values[0] < value < values[-1]:
            continue
        end = "smallest" if value == values[0] else "largest"
        edges.append(f"{key} ({value:g} is the {end} of {values[0]:g}..{values[-1]:g})")
    return edges


def setting_options(labels, result):
    """The values of the options a setting varies: task.json's "options", or (results of an older
    sweep) the run's own arguments for the options its setting names."""
    if "options" in labels:
        return labels["options"]
    names = [part.partition("=")[0] for part in labels.get("setting", "").split(", ") if part]
    return {name: (result.get("args") or {}).get(name) for name in names}


def method_order(method):
    """The paper's order (Original first), then the other methods by name."""
    return (list(NAMES).index(method), "") if method in NAMES else (len(NAMES), method)


def row_name(method, setting):
    return NAMES.get(method, method) + (f" ({setting})" if setting else "")


def near_chance(entry):
    return entry.get("attack") is not None and abs(entry["attack"][0] - 50.0) < CHANCE_MARGIN


def ordered(table):
    return sorted(table.items(), key=lambda kv: (kv[0][0], method_order(kv[0][2]), kv[0][3], kv[1]["sparsity"], kv[0][1]))


def read_ulira(folder):
    """{(model, method): report} from scripts/ulira.py's `<folder>/<model>/<method>.json`, or {}."""
    reports = {}
    for path in sorted(glob.glob(os.path.join(glob.escape(folder), "*", "*.json"))):
        try:
            with open(path) as f:
                report = json.load(f)
            reports[report["model"], report["method"]] = report
        except (OSError, ValueError, KeyError, TypeError) as err:
            print(f"warning: {path}: unreadable U-LiRA result ({type(err).__name__}: {err}); left out", file=sys.stderr)
    return reports


def ulira_paired(folder, ulira, resamples=500):
    """Markdown: U-LiRA differences between rows that share targets and shadow halves, each with a
    95% paired-bootstrap interval over the targets (evaluation/ulira.py): every method against
    Retrain on the same model, and the sparser model against the denser for each method."""
    import numpy as np

    from evaluation.ulira import paired_difference

    arrays = {}
    for model, method in ulira:
        try:
            with np.load(paths.ulira_file(folder, model, method, ".npz")) as saved:
                arrays[model, method] = (saved["stats"], saved["forgotten"])
        except (OSError, KeyError, ValueError):
            continue
    models = sorted({m for m, _ in arrays}, key=lambda m: (m != "dense", m))
    pairs = [
        (f"{NAMES.get(me, me)} − Retrain, {mo}", (mo, "retrain"), (mo, me))
        for mo in models
        for (m2, me) in arrays
        if m2 == mo and me != "retrain"
    ]
    if len(models) == 2:
        pairs += [
            (f"{NAMES.get(me, me)}: {models[1]} − {models[0]}", (models[0], me), (models[1], me))
            for me in sorted({me for _, me in arrays}, key=method_order)
        ]
    lines = []
    for label, first, second in pairs:
        if first in arrays and second in arrays and np.array_equal(arrays[first][1], arrays[second][1]):
            forgotten = arrays[first][1].astype(bool)
            d = paired_difference(arrays[first][0], arrays[second][0], forgotten, ~forgotten, bootstrap=resamples)
            low, high = d["interval"] or (float("nan"), float("nan"))
            shows = "no difference found" if low <= 0 <= high else ("higher" if low > 0 else "lower")
            lines.append(f"| {label} | {100 * d['difference']:+.1f} | [{100 * low:+.1f}, {100 * high:+.1f}] | {shows} |")
    if not lines:
        return ""
    head = [
        "",
        "#### U-LiRA: paired differences",
        "",
        "| difference (percentage points) | mean | 95% paired-bootstrap interval | |",
        "|---|---|---|---|",
    ]
    tail = ["", "Both rows of a difference are attacked on the same targets with the same shadow halves, so each bootstrap "
            "resample draws the same targets for both; an interval that holds 0 finds no difference. Against Retrain, "
            "higher means the method leaves more for the attack to find than exact unlearning does."]  # fmt: skip
    return "\n".join(head + lines + tail) + "\n"


def markdown(table, notes=(), ulira=None, pooled_models=False, best_by="mean"):
    lines = []
    ulira = ulira or {}
    for scenario in sorted({k[0] for k in table}):
        lines += [f"### {scenario} forgetting", ""]
        header = ["method", "model", *METRICS, "Avg. Gap", "ToW", "RTE (min)", "runs", "MIA attack acc."]
        header += ["U-LiRA acc."] if ulira else []
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for (sc, model, method, setting), e in ordered(table):
            if sc != scenario:
                continue
            cells = [row_name(method, setting), model]
            for m in METRICS:
                mean, std = e[m]
                gap = f" ({e['gap'][m]:.2f})" if e["gap"] is not None else ""
                mark = CHANCE_MARK if m == "MIA-Efficacy" and near_chance(e) else ""
                cells.append(f"{mean:.2f}±{std:.2f}{gap}{mark}")
            cells.append(f"{e['avg_gap']:.2f}" if e["avg_gap"] is not None else "—" if method in NO_GAP else "n/a")
            tow = e.get("tow")
            spread = "" if tow is None or tow[1] is None else f"±{tow[1]:.3f}"
            cells.append("—" if method in NO_GAP else "n/a" if tow is None else f"{tow[0]:.3f}{spread}")
            cells.append(f"{e['RTE'][0]:.2f}±{e['RTE'][1]:.2f}")
            cells.append(str(e["n"]))
            cells.append(f"{e['attack'][0]:.2f}±{e['attack'][1]:.2f}" if e.get("attack") else "n/a")
            if ulira:
                report = ulira.get((model, method))
                cells.append(f"{100 * report['balanced_accuracy']:.2f} (K={report['reference_models']})" if report else "n/a")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    note = (
        "Mean ± std over runs (every original model and unlearning seed, pooled: the spread of models and of unlearning "
        "together; the statistics across original models are below)"
        if pooled_models
        else "Mean ± std over seeds"
    )
    note += "; in brackets the gap to Retrain of the same model and scenario (lower is better)."
    note += (" ToW (tug of war, as RUM computes it): per run the product of 1 − |gap| / 100 of UA, RA and TA to the mean of "
             "the same original model's Retrain runs (1 is Retrain), mean ± 95% t half-width over the runs.")  # fmt: skip
    if any(key[2] in NO_GAP for key in table):
        note += " Original: the model before unlearning (no gap: it is where every method starts)."
    lines.append(note)
    if any(near_chance(e) for e in table.values()):
        lines += ["", f"{CHANCE_MARK} The shadow attack behind MIA-Efficacy separates held-out retain from test samples no better "
                  f"than {50 + CHANCE_MARGIN:.0f}% (MIA attack acc.; 50% is chance): the model treats members and non-members alike, "
                  "so the share of forget samples it calls non-members says little about forgetting."]  # fmt: skip
    if ulira:
        lines += ["", "U-LiRA acc.: scripts/ulira.py's per-example attack (balanced accuracy, percent; 50 = a forgotten example "
                  "looks like one never seen, as after Retrain), on K shadow models that forgot random targets, whatever "
                  "the scenario of the row."]  # fmt: skip
    if notes:
        judged = (
            f"{'largest' if best_by == 'worst' else 'mean'} over the original models of each model's Avg. Gap"
            if pooled_models
            else "Avg. Gap"
        )
        lines += ["", f"--best kept, per method, model and scenario, the setting with the smallest {judged}:", ""]
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def per_seed_gaps(rows):
    """{(scenario, model, method, setting): {seed: Avg. Gap to that seed's own Retrain}}."""
    retrain = {(r["scenario"], r["model"], r["seed"]): r for r in rows if r["method"] == "retrain"}
    gaps = defaultdict(dict)
    for r in rows:
        reference = retrain.get((r["scenario"], r["model"], r["seed"]))
        if reference is not None and r["method"] not in NO_GAP and r["method"] != "retrain":
            gap = sum(abs(r[m] - reference[m]) for m in METRICS) / len(METRICS)
            gaps[(r["scenario"], r["model"], r["method"], r["setting"])][r["seed"]] = gap
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
        ft = {m: v for (sc, m, me, _), v in kept.items() if sc == scenario and me == "FT"}
        l1 = {m: v for (sc, m, me, _), v in kept.items() if sc == scenario and me == "FT_prune"}
        if len(ft) == len(l1) == 2 and set(ft) == set(models):
            lines += ["", f"| | {models[0]} | {models[1]} |", "|---|---|---|"]
            lines.append("| l1-sparse − FT | " + " | ".join(difference(ft[m], l1[m]) for m in models) + " |")
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
    method_pairs = declared.get("methods") or [["FT", "FT_prune"]]
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
    lines += reference_comparison(rows, "retrain_pipeline")
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


def write_csv(table, path):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        stats = [f"{m}_{s}" for m in (*METRICS, "RTE") for s in ("mean", "std")]
        header = ["scenario", "method", "setting", "model", "sparsity", "runs", *stats, *(f"{m}_gap" for m in METRICS), "avg_gap",
                  "mia_attack_acc_mean", "mia_attack_acc_std", "tow_mean", "tow_ci95"]  # fmt: skip
        writer.writerow(header)
        for (scenario, model, method, setting), e in ordered(table):
            gaps = [e["gap"][m] if e["gap"] else "" for m in METRICS]
            values = [v for m in (*METRICS, "RTE") for v in e[m]]
            avg_gap = "" if e["avg_gap"] is None else e["avg_gap"]
            attack = list(e["attack"]) if e.get("attack") else ["", ""]
            tow = [e["tow"][0], "" if e["tow"][1] is None else e["tow"][1]] if e.get("tow") else ["", ""]
            labels = [scenario, NAMES.get(method, method), setting, model, e["sparsity"], e["n"]]
            writer.writerow([*labels, *values, *gaps, avg_gap, *attack, *tow])


def plot(table, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = sorted({k[0] for k in table})
    fig, axes = plt.subplots(len(scenarios), len(METRICS), figsize=(4 * len(METRICS), 3.2 * len(scenarios)), squeeze=False)
    for row, scenario in enumerate(scenarios):
        keys = [k for k, _ in ordered(table) if k[0] == scenario]
        rows = sorted({(k[2], k[3]) for k in keys}, key=lambda ms: (method_order(ms[0]), ms[1]))
        models = sorted({k[1] for k in keys}, key=lambda m: (m != "dense", m))
        width = 0.8 / max(len(models), 1)
        for col, metric in enumerate(METRICS):
            ax = axes[row][col]
            for i, model in enumerate(models):
                xs, means, stds = [], [], []
                for j, (method, setting) in enumerate(rows):
                    entry = table.get((scenario, model, method, setting))
                    if entry:
                        xs.append(j + (i - (len(models) - 1) / 2) * width)
                        means.append(entry[metric][0])
                        stds.append(entry[metric][1])
                ax.bar(xs, means, width, yerr=stds, label=model, capsize=2)
            ax.set_xticks(range(len(rows)), [row_name(m, s) for m, s in rows], rotation=30, ha="right")
            ax.set_title(f"{metric} ({scenario})")
            ax.set_ylim(0, 105)
            if col == 0:
                ax.set_ylabel("percent")
        axes[row][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(prog="scripts/summarize.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--out", default=None, help="Markdown file (default RUN_DIR/summary.md); .csv and .png beside it")
    parser.add_argument(
        "--best", action="store_true", help="per method, model and scenario, keep only the setting with the smallest average gap to Retrain"
    )
    parser.add_argument(
        "--best-by",
        choices=("mean", "worst"),
        default="mean",
        help="with --best and several original models: judge a setting by the mean of its per-model Avg. Gaps (default) or by its worst",
    )
    parser.add_argument(
        "--overrides", default=None, help='with --best: write the chosen settings to this JSON file, as a grid\'s "overrides" list'
    )
    parser.add_argument(
        "--ulira", default=None, help="scripts/ulira.py's RUN/ulira folder: a U-LiRA column (default: RUN_DIR/ulira when it exists)"
    )
    args = parser.parse_args()
    if not os.path.isdir(args.run_dir):
        print(f"error: {args.run_dir}: no such folder", file=sys.stderr)
        sys.exit(2)
    rows, problems = read_results(args.run_dir)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not rows:
        print(f"error: no readable *eval_result.json under {args.run_dir}", file=sys.stderr)
        sys.exit(2)
    rows, calibrations = matched.split_calibrations(rows)
    if not rows:
        print(f"error: only calibration runs under {args.run_dir}; their measured seeds have not finished", file=sys.stderr)
        sys.exit(2)
    table = aggregate(rows)
    notes = ()
    several_models = len({r["train_seed"] for r in rows}) > 1
    if args.best:
        table, notes, overrides = keep_best(table, best_scores(rows, args.best_by) if several_models else None)
        if args.overrides:
            with open(args.overrides, "w") as f:
                json.dump(overrides, f, indent=2)
                f.write("\n")
    ulira_dir = args.ulira or os.path.join(args.run_dir, "ulira")
    if args.ulira and not os.path.isdir(args.ulira):
        print(f"error: --ulira {args.ulira}: no such folder", file=sys.stderr)
        sys.exit(2)
    ulira = read_ulira(ulira_dir) if os.path.isdir(ulira_dir) else {}
    comparisons = original_model_comparisons(rows, table, declared_comparisons(args.run_dir)) if several_models else ""
    text = markdown(table, notes, ulira, pooled_models=several_models, best_by=args.best_by) + (
        comparisons or seed_comparisons(rows, table)
    )
    if ulira:
        text += ulira_paired(ulira_dir, ulira)
    declared = declared_comparisons(args.run_dir)
    if several_models and declared.get("matched"):
        text += matched.matched_comparison(rows, declared, NAMES)
    text += matched.calibration_section(calibrations, rows, NAMES)
    out = args.out or os.path.join(args.run_dir, "summary.md")
    stem = os.path.splitext(out)[0]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    curves = matched.plot_curves(calibrations, rows, stem + "_curves", NAMES)
    with open(out, "w") as f:
        f.write(text)
    write_csv(table, stem + ".csv")
    plot(table, stem + ".png")
    print(text)
    figures = f"; curves: {len(curves)} figure{'s' * (len(curves) > 1)} in {stem}_curves/" if curves else ""
    print(f"{len(rows)} results summarised{f', {len(problems)} left out (see warnings)' if problems else ''}; "
          f"written {out}, {stem}.csv, {stem}.png{figures}")  # fmt: skip


if __name__ == "__main__":
    main()
