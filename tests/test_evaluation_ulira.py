"""U-LiRA's attack (evaluation/ulira.py) on statistics whose distributions are known."""

import math

import numpy as np
import pytest
import torch

from evaluation.ulira import logit_confidence, spread_over_models, tpr_at_fpr, ulira


def synthetic(shift, models=100, examples=400, seed=0):
    """Per-example means spread widely; forgotten shifts the statistic by `shift` (unit noise)."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(0, 2, size=examples)
    forgotten = rng.random((models, examples)) < 0.5
    stats = centre + shift * forgotten + rng.normal(size=(models, examples))
    return stats, forgotten, ~forgotten


def normal_cdf(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


@pytest.mark.parametrize("shift", [0.5, 1.0, 2.0])
def test_accuracy_matches_the_analytic_value_of_two_known_gaussians(shift):
    # Equal variances: the likelihood ratio splits at the midpoint, accuracy Phi(shift / 2).
    result = ulira(*synthetic(shift), bootstrap=0)
    assert result["balanced_accuracy"] == pytest.approx(normal_cdf(shift / 2), abs=0.015)
    assert result["target_models"] == 100 and result["forgotten_scored"] + result["unseen_scored"] == 100 * 400


def test_identical_distributions_give_chance():
    result = ulira(*synthetic(0.0), bootstrap=0)
    assert result["balanced_accuracy"] == pytest.approx(0.5, abs=0.015)
    assert result["tpr_at_1%_fpr"] == pytest.approx(0.01, abs=0.01)


def test_per_example_calibration_beats_one_global_threshold():
    # The spread of the per-example means hides a shift of 1 from any single threshold.
    stats, forgotten, unseen = synthetic(1.0)
    best_global = max(0.5 * ((stats[forgotten] > t).mean() + (stats[unseen] <= t).mean()) for t in np.linspace(-4, 4, 81))
    assert ulira(stats, forgotten, unseen, bootstrap=0)["balanced_accuracy"] > best_global + 0.05


def test_examples_neither_forgotten_nor_unseen_are_not_scored():
    stats, forgotten, unseen = synthetic(1.0, models=20, examples=50)
    retained = np.zeros_like(forgotten)
    retained[:, :10] = True  # the first ten examples stay in every model's retain set
    result = ulira(stats, forgotten & ~retained, unseen & ~retained)
    assert result["forgotten_scored"] + result["unseen_scored"] == 20 * 40


def test_bad_shapes_and_overlaps_are_refused():
    stats, forgotten, unseen = synthetic(1.0, models=4, examples=5)
    with pytest.raises(ValueError, match="one shape"):
        ulira(stats[:, :4], forgotten, unseen)
    with pytest.raises(ValueError, match="both forgotten"):
        ulira(stats, forgotten, np.ones_like(unseen))


def test_logit_confidence_is_log_odds_of_the_true_label():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 30.0, 0.0]])
    labels = torch.tensor([0, 1])
    p = torch.softmax(logits.double(), dim=1)[torch.arange(2), labels]
    expected = (p.log() - (1 - p).log()).numpy()
    assert np.allclose(logit_confidence(logits, labels)[:1], expected[:1])
    assert logit_confidence(logits, labels)[1] == pytest.approx(30 - math.log(2))  # finite where 1 - p_y underflows


def test_tpr_at_a_false_positive_rate():
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0] + [float(i) / 100 for i in range(100)])
    positive = np.array([True] * 6 + [False] * 100)
    # 1% of 100 negatives may pass: the threshold is the second-highest negative (0.98)
    assert tpr_at_fpr(scores, positive, 0.01) == pytest.approx(5 / 6)


def test_the_spread_over_subsets_of_models_shrinks_with_more_models():
    rng = np.random.RandomState(3)
    k_models, n = 24, 150
    member = rng.rand(k_models, n) < 0.5
    stats = rng.randn(n) * 2 + rng.randn(k_models, n) + 0.8 * member
    spread = spread_over_models(stats, member, ~member, sizes=(6, 12, 24), draws=12, seed=0)
    assert set(spread) == {6, 12, 24}
    assert spread[6][1] > spread[12][1] > spread[24][1] == 0.0  # all 24 models: one subset, no spread
    assert spread[12][0] > 0.6  # the estimate itself stays above chance


def test_the_standard_error_matches_the_spread_of_fresh_target_pools():
    # 60 targets and 16 models, as in scripts/grids/digits_ulira.json: the bootstrap over
    # examples should say how far a fresh pool's estimate lands.
    fresh = [ulira(*synthetic(1.0, models=16, examples=60, seed=s), bootstrap=0)["balanced_accuracy"] for s in range(40)]
    se = [ulira(*synthetic(1.0, models=16, examples=60, seed=100 + s), bootstrap=50)["balanced_accuracy_se"] for s in range(8)]
    assert 0.6 < np.mean(se) / np.std(fresh, ddof=1) < 1.6, (np.mean(se), np.std(fresh, ddof=1))


def test_auc_matches_the_analytic_value_of_two_known_gaussians():
    # Per-example Gaussians with unit variance shifted by d: the log LR ranks like the statistic, AUC = Phi(d / sqrt 2).
    for shift in (0.5, 1.5):
        result = ulira(*synthetic(shift), bootstrap=0)
        assert result["auc"] == pytest.approx(normal_cdf(shift / math.sqrt(2)), abs=0.02)
    assert ulira(*synthetic(0.0), bootstrap=0)["auc"] == pytest.approx(0.5, abs=0.02)


def test_tpr_at_1_percent_gets_a_bootstrap_interval_and_the_false_positives_it_rests_on():
    stats, forgotten, unseen = synthetic(1.0, models=16, examples=60)
    result = ulira(stats, forgotten, unseen, bootstrap=60)
    low, high = result["tpr_at_1%_fpr_interval"]
    assert low <= result["tpr_at_1%_fpr"] <= high and high - low > 0
    assert result["false_positives_at_1%"] == result["unseen_scored"] // 100
    assert result["false_positives_at_0.1%"] == result["unseen_scored"] // 1000


def test_a_paired_difference_cancels_what_two_rows_share():
    from evaluation.ulira import paired_difference

    stats, forgotten, unseen = synthetic(1.0, models=16, examples=60, seed=3)
    same = paired_difference(stats, stats, forgotten, unseen, bootstrap=50)
    assert same["difference"] == 0 and same["interval"] == [0.0, 0.0]
    # The second row forgets worse (a larger shift) on the same targets and halves: the paired interval sees it,
    # and it is narrower than the two rows' separate standard errors would make it.
    rng = np.random.default_rng(9)
    worse = stats + 1.0 * forgotten + 0.1 * rng.normal(size=stats.shape)
    paired = paired_difference(stats, worse, forgotten, unseen, bootstrap=100)
    a, b = ulira(stats, forgotten, unseen, bootstrap=100), ulira(worse, forgotten, unseen, bootstrap=100)
    assert paired["difference"] == pytest.approx(b["balanced_accuracy"] - a["balanced_accuracy"])
    assert paired["interval"][0] > 0
    unpaired_half_width = 1.96 * math.hypot(a["balanced_accuracy_se"], b["balanced_accuracy_se"])
    assert (paired["interval"][1] - paired["interval"][0]) / 2 < unpaired_half_width
