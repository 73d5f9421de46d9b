"""workflow/stats.py on numbers made here, checked against scipy and by hand."""

import math

import pytest
from scipy import stats as scipy_stats

from workflow import stats

METRICS = ("UA", "MIA-Efficacy", "RA", "TA")


def row(model, method, train_seed, seed, values, scenario="class-wise", setting=""):
    return {"scenario": scenario, "model": model, "method": method, "setting": setting, "train_seed": train_seed, "seed": seed,
            **dict(zip(METRICS, values))}  # fmt: skip


def study_rows():
    """Three original models, two seeds each; Retrain, FT (seed-dependent), IU (the same on every seed)."""
    rows = []
    for t, shift in ((1, 0.0), (2, 1.0), (3, -1.0)):
        for model, extra in (("dense", 0.0), ("95% sparse", 2.0)):
            rows += [row(model, "retrain", t, 1, (100, 100, 98 + shift, 86)), row(model, "retrain", t, 2, (100, 100, 96 + shift, 84))]
            rows += [row(model, "FT", t, s, (90 + s + extra * t, 99, 97, 85 - extra)) for s in (1, 2)]
            rows += [row(model, "wfisher", t, s, (70 + 10 * t + extra, 80, 97, 85)) for s in (1, 2)]
    return rows


def test_a_methods_gap_per_original_model_is_against_the_mean_of_that_models_retrain_runs():
    gaps = stats.per_model_gaps(study_rows())
    # FT, dense, model 1: its seeds average to (91.5, 99, 97, 85); Retrain's runs to (100, 100, 97, 85)
    assert gaps[("class-wise", "dense", "FT", "")][1] == pytest.approx((8.5 + 1 + 0 + 0) / 4)
    # model 2's Retrain is shifted by one point of RA: (100, 100, 98, 85)
    assert gaps[("class-wise", "dense", "FT", "")][2] == pytest.approx((8.5 + 1 + 1 + 0) / 4)
    assert set(gaps[("class-wise", "95% sparse", "wfisher", "")]) == {1, 2, 3}
    assert ("class-wise", "dense", "retrain", "") not in gaps


def test_the_noise_floor_is_the_gap_between_two_retrain_runs_of_one_original_model():
    floors = stats.noise_floor(study_rows())
    assert floors[("class-wise", "dense")] == {1: pytest.approx(1.0), 2: pytest.approx(1.0), 3: pytest.approx(1.0)}  # (0+0+2+2)/4


def test_a_method_that_ignores_the_seed_is_detected():
    sensitive = stats.seed_sensitivity(study_rows())
    assert sensitive[("class-wise", "dense", "FT", "")] is True
    assert sensitive[("class-wise", "dense", "wfisher", "")] is False
    one_seed = [r for r in study_rows() if r["seed"] == 1]
    assert stats.seed_sensitivity(one_seed)[("class-wise", "dense", "FT", "")] is None


def test_paired_differences_match_scipy_and_holm_matches_its_definition():
    gaps = stats.per_model_gaps(study_rows())
    family = stats.compare(
        gaps,
        [
            ("FT", ("class-wise", "dense", "FT", ""), ("class-wise", "95% sparse", "FT", "")),
            ("IU", ("class-wise", "dense", "wfisher", ""), ("class-wise", "95% sparse", "wfisher", "")),
        ],
    )
    for c in family:
        first, second = gaps[c["first"]], gaps[c["second"]]
        seeds = sorted(first)
        diffs = [second[s] - first[s] for s in seeds]
        assert c["mean"] == pytest.approx(sum(diffs) / 3)
        expected_p = scipy_stats.ttest_rel([second[s] for s in seeds], [first[s] for s in seeds]).pvalue
        assert c["p"] == pytest.approx(expected_p if not math.isnan(expected_p) else 0.0)
    # Holm by hand: the smaller p times 2, the larger times 1, made monotone
    ps = sorted(c["p"] for c in family)
    adjusted = sorted(c["p_holm"] for c in family)
    assert adjusted[0] == pytest.approx(min(1, 2 * ps[0]))
    assert adjusted[1] == pytest.approx(max(adjusted[0], ps[1]))
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_the_corrected_interval_decides_the_verdict():
    # Sparse is closer by about 2 on every model, with a little spread: a finding.
    close = {1: 1.0, 2: 1.2, 3: 0.9, 4: 1.1}
    far = {1: 3.0, 2: 3.1, 3: 3.0, 4: 3.2}
    noisy_first, noisy_second = {1: 1.0, 2: 5.0, 3: 2.0, 4: 6.0}, {1: 4.0, 2: 1.0, 3: 5.0, 4: 2.0}
    gaps = {"far": far, "close": close, "a": noisy_first, "b": noisy_second}
    found, none = stats.compare(gaps, [("clear", "far", "close"), ("noise", "a", "b")])
    assert found["verdict"] == "second closer" and found["high"] < 0
    assert none["verdict"] is None and none["low"] < 0 < none["high"]
    # the clear one ranks first of two: its interval is at 97.5%, the other's at 95%
    assert found["level"] == pytest.approx(0.975) and none["level"] == pytest.approx(0.95)
    diffs = [close[s] - far[s] for s in (1, 2, 3, 4)]
    mean, sd = sum(diffs) / 4, math.sqrt(sum((d - sum(diffs) / 4) ** 2 for d in diffs) / 3)
    half = scipy_stats.t.ppf(1 - 0.025 / 2, 3) * sd / 2
    assert (found["low"], found["high"]) == (pytest.approx(mean - half), pytest.approx(mean + half))


def test_one_original_model_gives_no_interval():
    assert stats.paired({1: 1.0}, {1: 2.0}) is None
    mean, half, n = stats.summary([2.0])
    assert (mean, half, n) == (2.0, None, 1)


def test_summarize_prints_the_floor_the_intervals_and_the_verdict_in_words():
    from workflow.comparisons import original_model_comparisons
    from workflow.table import aggregate

    rows = [{**r, "RTE": 0.1, "attack": None, "sparsity": 95.0 if "sparse" in r["model"] else 0.0, "options": {}} for r in study_rows()]
    text = original_model_comparisons(rows, aggregate(rows), {})
    assert "### Across original models (3 independently trained dense / sparse pairs)" in text
    floor = next(line for line in text.splitlines() if line.startswith("| Retrain vs Retrain (noise floor)"))
    assert floor.count("1.00 [1.00, 1.00] (n=3)") == 2  # mean [95% t interval] (n)
    iu = next(line for line in text.splitlines() if line.startswith("| IU |"))
    assert "\\*" in iu  # the same on every seed
    gaps = stats.per_model_gaps(rows)
    family = stats.compare(gaps, [("x", ("class-wise", "dense", "FT", ""), ("class-wise", "95% sparse", "FT", ""))])
    ft = next(line for line in text.splitlines() if line.startswith("| FT: 95% sparse − dense"))
    assert f"{family[0]['mean']:+.2f} (n=3)" in ft
    assert ft.endswith("| no difference found |")  # p 0.23 before the correction
    assert "| l1-sparse − FT" not in text  # no l1-sparse runs: no such comparison


def test_the_verdict_names_the_model_or_method_that_is_closer():
    from workflow.comparisons import verdict_words

    assert verdict_words({"label": "FT: 95% sparse − dense", "verdict": "second closer"}) == "95% sparse closer"
    assert verdict_words({"label": "FT: 95% sparse − dense", "verdict": "first closer"}) == "dense closer"
    assert verdict_words({"label": "l1-sparse − FT, dense", "verdict": "second closer"}) == "l1-sparse closer"
    assert verdict_words({"label": "l1-sparse − FT, dense", "verdict": "first closer"}) == "FT closer"
    assert verdict_words({"label": "l1-sparse − FT, dense", "verdict": None}) == "no difference found"


def test_a_corrected_interval_excludes_zero_exactly_when_holm_rejects():
    import random

    rng = random.Random(0)
    checked = 0
    for _ in range(200):
        gaps, pairs = {}, []
        for j in range(rng.randint(2, 6)):
            effect = rng.choice([0.0, 0.5, 1.0, 2.0])
            gaps[f"a{j}"] = {t: rng.gauss(3, 1) for t in range(5)}
            gaps[f"b{j}"] = {t: gaps[f"a{j}"][t] - effect + rng.gauss(0, 0.8) for t in range(5)}
            pairs.append((str(j), f"a{j}", f"b{j}"))
        for c in stats.compare(gaps, pairs):
            assert (c["verdict"] is not None) == (c["p_holm"] < stats.ALPHA), c
            checked += c["verdict"] is not None
    assert checked > 20  # some findings among them, not only "no difference"


def test_retrain_pipeline_is_compared_with_retrain_per_metric_and_against_the_noise_floor():
    from workflow.comparisons import original_model_comparisons
    from workflow.table import aggregate

    rows = study_rows()
    # Retrain (pipeline): one run per sparse model, class-wise; TA 5.2 to 5.6 points below Retrain's mean, RA 1 above
    for t, shift in ((1, 0.0), (2, 1.0), (3, -1.0)):
        rows.append(row("95% sparse", "retrain_pipeline", t, 1, (100, 100, 98 + shift, 80 - 0.2 * t)))
    found = stats.reference_against_retrain(rows, "retrain_pipeline")
    assert set(found) == {("class-wise", "95% sparse", "retrain_pipeline", "")}
    result = found[("class-wise", "95% sparse", "retrain_pipeline", "")]
    ta_diffs = [(80 - 0.2 * t) - 85 for t in (1, 2, 3)]  # Retrain's two runs average 85 on TA
    mean, low, high, n = result["metrics"]["TA"][2]
    half = scipy_stats.t.ppf(0.975, 2) * scipy_stats.tstd(ta_diffs) / math.sqrt(3)
    assert (mean, n) == (pytest.approx(-5.4), 3) and (low, high) == (pytest.approx(-5.4 - half), pytest.approx(-5.4 + half))
    assert result["metrics"]["RA"][2][0] == pytest.approx(1.0)
    assert result["metrics"]["UA"][2][:3] == (0.0, 0.0, 0.0)
    # run to run, against Retrain's run of the other seed (2: RA 96+s, TA 84): RA gap 2, TA 4+0.2t
    expected = [(2 + 4 + 0.2 * t) / 4 - 1.0 for t in (1, 2, 3)]  # minus the floor, 1.0 on every model
    assert result["reference_gap"] == pytest.approx([e + 1.0 for e in expected])
    mean, low, high, n = result["gap"]
    assert mean == pytest.approx(sum(expected) / 3) and low > 0
    rows = [{**r, "RTE": 0.1, "attack": None, "sparsity": 95.0 if "sparse" in r["model"] else 0.0, "options": {}} for r in rows]
    text = original_model_comparisons(rows, aggregate(rows), {})
    assert "**Retrain (pipeline) against Retrain under the original mask**" in text
    assert "| TA | 79.60 | 85.00 | -5.40 [" in text
    assert "further from Retrain than the noise floor" in text


def test_a_reference_is_compared_with_retrain_runs_of_other_seeds_only_and_partial_studies_do_not_break():
    rows = study_rows()
    retrain_1 = [r for r in rows if r["model"] == "95% sparse" and r["method"] == "retrain" and r["seed"] == 1]
    rows += [{**r, "method": "retrain_pipeline"} for r in retrain_1]  # a copy of Retrain's seed-1 runs
    gaps = stats.run_to_retrain_gaps(rows, "retrain_pipeline")
    # its gap to Retrain's seed-2 run only: exactly the noise floor (1.0); with its own twin it would be 0.5
    assert gaps[("class-wise", "95% sparse", "retrain_pipeline", "")] == {t: pytest.approx(1.0) for t in (1, 2, 3)}
    found = stats.reference_against_retrain(rows, "retrain_pipeline")
    assert found[("class-wise", "95% sparse", "retrain_pipeline", "")]["gap"][0] == pytest.approx(0.0)
    # a run on an original model without Retrain runs yet (a study half done) is left out, not a crash
    lonely = [row("95% sparse", "retrain_pipeline", 9, 1, (100, 100, 97, 85), setting="epochs=3")]
    found = stats.reference_against_retrain(study_rows() + lonely, "retrain_pipeline")
    assert found == {}


def test_a_declared_comparison_without_results_stays_in_the_holm_family():
    gaps = {"a": {t: 3.0 + 0.1 * t for t in range(5)}, "b": {t: 1.0 + 0.12 * t for t in range(5)}}
    alone = stats.compare(gaps, [("found", "a", "b")])
    declared = stats.compare(gaps, [("found", "a", "b"), ("not yet run", "a", "c")])
    assert declared[0]["p"] == alone[0]["p"] and declared[0]["p_holm"] == pytest.approx(min(1.0, 2 * alone[0]["p"]))
    assert declared[1]["missing"] and declared[1]["verdict"] is None and declared[1]["p_holm"] == 1.0


def test_the_study_grid_fixes_the_family_before_its_results_land(tmp_path):
    import json

    from workflow.comparisons import comparison_family, declared_comparisons
    from workflow.table import aggregate

    grid = {
        "methods": {"raw": {}, "retrain": {}, "retrain_pipeline": {}, "FT": {}, "GA": {}, "FT_prune": {}},
        "scenarios": {"class-wise": {}, "random": {}},
        "comparisons": {"models": ["dense", "95% sparse"], "methods": [["FT", "FT_prune"]]},
    }
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    declared = declared_comparisons(str(tmp_path))
    rows = [{**r, "RTE": 0.1, "attack": None, "sparsity": 95.0 if "sparse" in r["model"] else 0.0, "options": {}} for r in study_rows()]
    rows = [r for r in rows if r["method"] in ("retrain", "FT")]  # only FT has landed, class-wise only
    family = comparison_family(aggregate(rows), declared)
    # FT, GA, l1-sparse: 95% sparse − dense, and l1-sparse − FT on each model, in both scenarios; never a reference
    assert len(family) == 2 * (3 + 2)
    assert not any("retrain" in key[2] for _, *keys in family for key in keys)


def test_indistinguishable_from_retrain_is_judged_on_the_floors_footing():
    def runs(method, first, second):
        return [row("dense", method, t, s, (100, 100, ra, 86)) for t in (1, 2) for s, ra in ((1, first), (2, second))]

    rows = runs("retrain", 98, 96)  # floor: |98 - 96| / 4 = 0.5 on each model
    floors = stats.noise_floor(rows)
    key = ("class-wise", "dense", "FT", "")
    # Spread wider than Retrain's: its seed average equals Retrain's mean (gap 0), yet each run lies
    # 3 points from the Retrain run of the other seed (0.75 > 0.5): not indistinguishable.
    wide = rows + runs("FT", 99, 95)
    assert stats.per_model_gaps(wide)[key] == {1: 0.0, 2: 0.0}
    assert stats.indistinguishable_from_retrain(wide, key, floors) is False
    # Drawn like Retrain's own runs: run against run, as close as Retrain's runs are to each other.
    alike = rows + runs("FT", 98, 96)
    assert stats.indistinguishable_from_retrain(alike, key, floors) is True
    assert stats.indistinguishable_from_retrain(rows + runs("GA", 98, 96), ("class-wise", "95% sparse", "GA", ""), floors) is None
