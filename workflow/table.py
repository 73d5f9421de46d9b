"""The paper's table as numbers: one entry per (scenario, model, method, setting) with the mean and
std over its runs of every metric, its gaps to Retrain, ToW and the attack's own accuracy; and
--best's choice among settings."""

import math
from collections import defaultdict

from workflow.methods import NAMES, ORIGINAL_METHOD, REFERENCE_METHOD, method_order
from workflow.stats import METRICS, avg_gap, reference_key

# The shadow attack's own accuracy on members and non-members it was not fit on (the
# training-privacy attack's confidence score); within this many points of 50% it cannot
# tell members from non-members, and an MIA-Efficacy cell is marked.
CHANCE_MARGIN = 5.0
CHANCE_MARK = "†"


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
        reference = reference_of(table, scenario, model) if method != ORIGINAL_METHOD else None
        entry["gap"] = {m: abs(entry[m][0] - reference[m][0]) for m in METRICS} if reference else None
        entry["avg_gap"] = avg_gap({m: entry[m][0] for m in METRICS}, {m: reference[m][0] for m in METRICS}) if reference else None
    for key, members in groups.items():
        table[key]["tow"] = tug_of_war(members, rows) if key[2] != ORIGINAL_METHOD else None
    return table


def tug_of_war(members, rows):
    """(mean, 95% t half-width or None, n) of ToW over the runs (kairanzhao/RUM, `surgical_plugins/analysis.py`):
    per run (1 - |UA gap| / 100) * (1 - |RA gap| / 100) * (1 - |TA gap| / 100), each gap to the mean of the Retrain
    runs of the same scenario, model and original model (the forget accuracy's gap is UA's); None without Retrain runs."""
    from scipy import stats

    values = []
    for run in members:
        retrains = [r for r in rows if r["method"] == REFERENCE_METHOD and not r["setting"] and
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


def reference_of(table, scenario, model):
    """The table's entry of the scenario and model's Retrain, or None."""
    key = reference_key(table, scenario, model)
    return table[key] if key is not None else None


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


def near_chance(entry):
    return entry.get("attack") is not None and abs(entry["attack"][0] - 50.0) < CHANCE_MARGIN


def ordered(table):
    return sorted(table.items(), key=lambda kv: (kv[0][0], method_order(kv[0][2]), kv[0][3], kv[1]["sparsity"], kv[0][1]))
