"""The statistics of a study whose unit of replication is the original model.

A grid with "train_seeds" trains several independent original models (each a dense model
and the sparse model pruned from it); every method unlearns from each with one or more
unlearning seeds. The comparisons a reviewer expects are made across original models:

1. Per original model, scenario, model (dense / sparse) and method: the method's metrics
   averaged over its own seeds, then its Avg. Gap against the mean of that model's Retrain
   runs (`per_model_gaps`). A method whose results do not change with the seed is one run
   repeated: `seed_sensitivity` says which.
2. The noise floor: the Avg. Gap between two Retrain runs of the same original model
   (`noise_floor`, the mean over the pairs of runs). A method whose runs lie as close to
   Retrain's runs as those lie to each other, measured the same way (run against run of
   different unlearning seeds, on the same original models), cannot be told apart from
   Retrain (`indistinguishable_from_retrain`).
3. Paired differences across original models (`compare`): sparse − dense per method, and
   l1-sparse − FT per model, each with its mean, a t interval and a p-value (scipy), then a
   Holm correction over the family of comparisons (`holm`); the verdict reads the corrected
   interval, never a count of seeds.
4. Another reference against Retrain (`reference_against_retrain`: Retrain (pipeline), the
   whole pruning run on the retain set, against Retrain under the original mask): per
   metric, the paired difference of the two means across original models; and its Avg. Gap
   to each Retrain run of another unlearning seed against the noise floor (the Avg. Gap from
   Retrain run to Retrain run), paired by original model. Run against run of different seeds
   on both sides, so that a reference drawn from Retrain's own distribution has the floor's
   expected gap.
"""

import math
from collections import defaultdict
from itertools import combinations

from workflow.methods import ORIGINAL_METHOD, REFERENCE_METHOD

METRICS = ("UA", "MIA-Efficacy", "RA", "TA")  # the paper's four, whose mean gap is the Avg. Gap
ALPHA = 0.05  # the family-wise error rate of the verdicts


def avg_gap(first, second):
    """The paper's Avg. Gap: the mean over the four metrics of |first - second|."""
    return sum(abs(first[m] - second[m]) for m in METRICS) / len(METRICS)


def mean_metrics(runs):
    return {m: sum(r[m] for r in runs) / len(runs) for m in METRICS}


def by_original_model(rows):
    """{(scenario, model, method, setting): {train_seed: [rows, one per unlearning seed]}}."""
    groups = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[(r["scenario"], r["model"], r["method"], r["setting"])][r.get("train_seed")].append(r)
    return groups


def reference_key(groups, scenario, model):
    """The key of the scenario and model's Retrain in anything keyed (scenario, model, method, setting):
    its one setting, or when it has several the one without a setting of its own; None without one."""
    keys = [k for k in groups if k[:3] == (scenario, model, REFERENCE_METHOD)]
    return keys[0] if len(keys) == 1 else next((k for k in keys if not k[3]), None)


def per_model_gaps(rows, no_gap=(ORIGINAL_METHOD, REFERENCE_METHOD)):
    """{key: {train_seed: Avg. Gap of the method's seed-averaged metrics to the mean of that original model's Retrain runs}}."""
    groups = by_original_model(rows)
    gaps = {}
    for key, per_model in groups.items():
        if key[2] in no_gap:
            continue
        reference = reference_key(groups, key[0], key[1])
        if reference is None:
            continue
        gaps[key] = {
            seed: avg_gap(mean_metrics(runs), mean_metrics(groups[reference][seed]))
            for seed, runs in per_model.items()
            if seed in groups[reference]
        }
    return gaps


def noise_floor(rows):
    """{(scenario, model): {train_seed: mean Avg. Gap between the pairs of that original model's Retrain runs}} (two runs or more)."""
    groups = by_original_model(rows)
    floors = {}
    for key, per_model in groups.items():
        if key[2] != REFERENCE_METHOD or key != reference_key(groups, key[0], key[1]):
            continue
        values = {}
        for seed, runs in per_model.items():
            pairs = [avg_gap(a, b) for a, b in combinations(runs, 2)]
            if pairs:
                values[seed] = sum(pairs) / len(pairs)
        if values:
            floors[key[:2]] = values
    return floors


def run_to_retrain_gaps(rows, method):
    """{key: {train_seed: mean Avg. Gap over the (method run, Retrain run) pairs of that original model}}, for
    every key (scenario, model, method, setting) of `method`. Pairs that share an unlearning seed are left out:
    the noise floor's pairs never do, and a shared seed (the same data order) would draw the two runs together."""
    groups = by_original_model(rows)
    result = {}
    for key, per_model in groups.items():
        if key[2] != method:
            continue
        reference = reference_key(groups, key[0], key[1])
        if reference is None:
            continue
        values = {}
        for seed, runs in per_model.items():
            retrains = groups[reference].get(seed, [])
            pairs = [avg_gap(run, retrain) for run in runs for retrain in retrains if run.get("seed") != retrain.get("seed")]
            if pairs:
                values[seed] = sum(pairs) / len(pairs)
        if values:
            result[key] = values
    return result


def indistinguishable_from_retrain(rows, key, floors):
    """True when `key`'s Avg. Gap measured as the noise floor is (each of its runs against a Retrain
    run of another unlearning seed, single run against single run) is at or below the floor on the
    same original models; None without both. A point comparison of two means, not a test: the
    method's seed-averaged gap against the mean of two Retrain runs sits on a smaller scale (about
    the floor / sqrt(2) for a method drawn from Retrain's own distribution), hence this footing."""
    gap = run_to_retrain_gaps(rows, key[2]).get(key, {})
    floor = floors.get(key[:2], {})
    both = [s for s in gap if s in floor]
    if not both:
        return None
    return sum(gap[s] for s in both) <= sum(floor[s] for s in both)


def interval(values):
    """(mean, low, high, n) of a 95% t interval; low = high = None with fewer than two values."""
    mean, half, n = summary(values)
    return (mean, None, None, n) if half is None else (mean, mean - half, mean + half, n)


def reference_against_retrain(rows, method):
    """{key: {"metrics": {metric: (reference mean, Retrain mean, (mean, low, high, n) of the per-model
    differences)}, "gap": (mean, low, high, n) of reference gap − noise floor per model or None,
    "reference_gap": [...], "floor": [...]}} for every key (scenario, model, method, setting) of `method`
    with runs on an original model that also has Retrain runs."""
    groups = by_original_model(rows)
    gaps, floors = run_to_retrain_gaps(rows, method), noise_floor(rows)
    result = {}
    for key, per_model in groups.items():
        if key[2] != method:
            continue
        reference = reference_key(groups, key[0], key[1])
        seeds = [] if reference is None else sorted(set(per_model) & set(groups[reference]), key=str)
        if not seeds:
            continue
        ours = {s: mean_metrics(per_model[s]) for s in seeds}
        theirs = {s: mean_metrics(groups[reference][s]) for s in seeds}
        metrics = {
            m: (
                sum(ours[s][m] for s in seeds) / len(seeds),
                sum(theirs[s][m] for s in seeds) / len(seeds),
                interval([ours[s][m] - theirs[s][m] for s in seeds]),
            )
            for m in METRICS
        }
        gap, floor = gaps.get(key, {}), floors.get(key[:2], {})
        both = sorted(set(gap) & set(floor), key=str)
        result[key] = {
            "metrics": metrics,
            "gap": interval([gap[s] - floor[s] for s in both]) if both else None,
            "reference_gap": [gap[s] for s in both],
            "floor": [floor[s] for s in both],
        }
    return result


def seed_sensitivity(rows, tolerance=1e-9):
    """{key: True when some original model's runs of the method differ between unlearning seeds;
    False when every original model gave the same metrics for every seed (one run, repeated);
    None with one seed per model}."""
    sensitivity = {}
    for key, per_model in by_original_model(rows).items():
        several = [runs for runs in per_model.values() if len(runs) > 1]
        if not several:
            sensitivity[key] = None
            continue
        sensitivity[key] = any(abs(run[m] - runs[0][m]) > tolerance for runs in several for run in runs for m in METRICS)
    return sensitivity


def summary(values):
    """(mean, 95% t interval half-width or None, n) of a list of per-model values."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None, n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, stats.t.ppf(1 - ALPHA / 2, n - 1) * sd / math.sqrt(n), n


def paired(first, second):
    """second - first over the original models both have: {"diffs", "mean", "sd", "n", "p"}, or None with fewer than two.

    p: the two-sided paired t-test (scipy.stats.ttest_rel); 1.0 when every difference is 0.
    """
    from scipy import stats

    seeds = sorted(set(first) & set(second), key=str)
    if len(seeds) < 2:
        return None
    diffs = [second[s] - first[s] for s in seeds]
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    p = 1.0 if sd == 0 and mean == 0 else float(stats.ttest_rel([second[s] for s in seeds], [first[s] for s in seeds]).pvalue)
    if math.isnan(p):  # every difference equal and non-zero: as certain as a t-test gets
        p = 0.0
    return {"diffs": diffs, "mean": mean, "sd": sd, "n": n, "p": p, "seeds": seeds}


def holm(p_values):
    """Holm's step-down adjusted p-values (same order as given)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def corrected_intervals(comparisons):
    """Each comparison's interval at its Holm level, so that it excludes 0 exactly when Holm rejects.

    These agree with Holm's test; they are not simultaneous 95% intervals (Bonferroni's, at
    1 - ALPHA / m for every comparison, would be: the first step's level here).

    Sorted by p, the r-th (from 0) of m gets confidence 1 - ALPHA / (m - r) while Holm's steps
    reject; from the first step that does not, every later comparison keeps that step's level
    (its p is no smaller, so its interval holds 0 too: the step-down stops there).
    """
    from scipy import stats

    m = len(comparisons)
    order = sorted(range(m), key=lambda i: comparisons[i]["p"])
    stopped_at = None
    for rank, i in enumerate(order):
        c = comparisons[i]
        if stopped_at is None and c["p"] > ALPHA / (m - rank):
            stopped_at = rank
        level = 1 - ALPHA / (m - (rank if stopped_at is None else stopped_at))
        if c.get("missing"):
            c["level"], c["low"], c["high"] = level, None, None
            continue
        half = stats.t.ppf(1 - (1 - level) / 2, c["n"] - 1) * c["sd"] / math.sqrt(c["n"])
        c["level"], c["low"], c["high"] = level, c["mean"] - half, c["mean"] + half
    return comparisons


def compare(gaps, pairs):
    """The family of paired comparisons, Holm-corrected.

    `pairs`: [(label, first key, second key)] into `gaps` ({key: {train_seed: gap}}); each
    comparison is second - first; one without results on two original models stays in the family
    (m is what was declared, not what has landed) with p = 1 and "missing". Returns dicts with the label, mean, sd, n, p, Holm-adjusted p,
    the corrected interval (low, high, level) and the verdict: "second closer" when the
    interval lies below 0, "first closer" above, None (no difference found) when it holds 0.
    """
    family = []
    for label, first, second in pairs:
        stats = paired(gaps[first], gaps[second]) if first in gaps and second in gaps else None
        if stats is None:  # declared but without results on two original models: in the family, never rejected
            stats = {"diffs": [], "mean": None, "sd": None, "n": 0, "p": 1.0, "seeds": [], "missing": True}
        family.append({"label": label, "first": first, "second": second, **stats})
    for c, p in zip(family, holm([c["p"] for c in family])):
        c["p_holm"] = p
    corrected_intervals(family)
    for c in family:  # the corrected interval decides (the same as Holm's adjusted p below ALPHA)
        significant = not c.get("missing") and (c["low"] > 0 or c["high"] < 0)
        c["verdict"] = None if not significant else "second closer" if c["mean"] < 0 else "first closer"
    return family
