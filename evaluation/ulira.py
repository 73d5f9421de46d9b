"""U-LiRA: per-example membership inference against unlearning (Hayes et al., 2024).

Population attacks (SVC_MIA) fit one classifier to all samples at once; U-LiRA asks, for
each target example separately, whether its statistic under an unlearned model looks like
it does under models that forgot it or under models that never trained on it.

Inputs are arrays over K reference models x N target examples:

- `stats[k, n]`: the statistic of example n under unlearned model k, the logit-scaled
  confidence of its true label, log p_y - log(1 - p_y) (`logit_confidence`);
- `forgotten[k, n]`: model k trained on n and then unlearned it;
- `unseen[k, n]`: model k never trained on n.

Each model in turn is the target; the others give, per example, one Gaussian of the
statistic where it was forgotten and one where it was never seen. The target's forgotten
(positive) and never-seen (negative) examples are scored by the log likelihood ratio,
pooled over targets. Balanced accuracy 0.5 means a forgotten example cannot be told from
one never seen (what Retrain achieves by construction).
"""

import math

import numpy as np
import torch

MIN_OBSERVATIONS = 2  # per example and group, among the non-target models
MIN_MODELS = 2 * MIN_OBSERVATIONS + 1  # the target and enough references in both groups


def logit_confidence(logits, labels):
    """log p_y - log(1 - p_y) from logits, computed without forming p (stable at p_y near 1)."""
    logits = torch.as_tensor(logits, dtype=torch.float64)
    labels = torch.as_tensor(labels, dtype=torch.long)
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return (true - torch.logsumexp(others, dim=1)).numpy()


def _group_fit(values, member, exclude):
    """Per-example mean and count of `values` over models where `member`, leaving out model `exclude`."""
    keep = member.copy()
    keep[exclude] = False
    count = keep.sum(axis=0)
    total = np.where(keep, values, 0.0).sum(axis=0)
    mean = np.divide(total, count, out=np.full(values.shape[1], np.nan), where=count > 0)
    squares = np.where(keep, (values - mean) ** 2, 0.0).sum(axis=0)
    return mean, count, squares


def _log_normal(x, mean, var):
    return -0.5 * (np.log(2 * math.pi * var) + (x - mean) ** 2 / var)


def target_scores(stats, forgotten, unseen, target, fixed_variance=True):
    """(scores, is_forgotten) for model `target`'s forgotten and never-seen examples.

    With `fixed_variance` each group's variance is pooled over all examples (the stable
    choice with few reference models); otherwise per example. Examples with fewer than
    MIN_OBSERVATIONS in either group among the other models are left out.
    """
    mean_in, n_in, sq_in = _group_fit(stats, forgotten, target)
    mean_out, n_out, sq_out = _group_fit(stats, unseen, target)
    usable = (n_in >= MIN_OBSERVATIONS) & (n_out >= MIN_OBSERVATIONS)
    if fixed_variance:
        var_in = np.full_like(mean_in, sq_in[usable].sum() / max(n_in[usable].sum() - usable.sum(), 1))
        var_out = np.full_like(mean_out, sq_out[usable].sum() / max(n_out[usable].sum() - usable.sum(), 1))
    else:
        var_in = sq_in / np.maximum(n_in - 1, 1)
        var_out = sq_out / np.maximum(n_out - 1, 1)
    var_in, var_out = np.maximum(var_in, 1e-12), np.maximum(var_out, 1e-12)
    chosen = usable & (forgotten[target] | unseen[target])
    x = stats[target, chosen]
    scores = _log_normal(x, mean_in[chosen], var_in[chosen]) - _log_normal(x, mean_out[chosen], var_out[chosen])
    return scores, forgotten[target, chosen]


def tpr_at_fpr(scores, positive, fpr):
    """The share of positives scored above the threshold that lets `fpr` of the negatives through."""
    negatives = np.sort(scores[~positive])[::-1]
    allowed = int(math.floor(fpr * len(negatives)))
    threshold = negatives[allowed] if allowed < len(negatives) else -np.inf
    return float((scores[positive] > threshold).mean())


def ulira(stats, forgotten, unseen, targets=None, fixed_variance=True, bootstrap=100, seed=0):
    """The attack over every target model: balanced accuracy (log LR > 0 says "forgotten"),
    AUC, TPR at 1% and 0.1% FPR, and the counts each figure rests on.

    Uncertainty from `bootstrap` resamples of the examples (with replacement; each resample
    reruns the whole attack), what a finite target pool leaves: the balanced accuracy's
    standard error and a 95% percentile interval on TPR at 1% FPR; 0 resamples skip both.
    TPR at a false-positive rate rests on floor(rate x negatives) false positives
    (`false_positives_at_1%`, `..._at_0.1%`): with a few hundred negatives, "0.1%" is zero."""
    scores, positive, per_model = _pooled_scores(stats, forgotten, unseen, targets, fixed_variance)
    stats, forgotten, unseen = np.asarray(stats, float), np.asarray(forgotten, bool), np.asarray(unseen, bool)
    resampled, tprs = [], []
    for columns in _resamples(stats.shape[1], bootstrap, seed):
        try:
            again = ulira(stats[:, columns], forgotten[:, columns], unseen[:, columns], targets, fixed_variance, bootstrap=0)
        except ValueError:  # a resample without usable examples
            continue
        resampled.append(again["balanced_accuracy"])
        tprs.append(again["tpr_at_1%_fpr"])
    negatives = int((~positive).sum())
    return {
        "balanced_accuracy": balanced_accuracy(scores, positive),
        "balanced_accuracy_se": float(np.std(resampled, ddof=1)) if len(resampled) > 1 else float("nan"),
        "balanced_accuracy_std_over_target_models": float(np.std(per_model, ddof=1)) if len(per_model) > 1 else 0.0,
        "auc": auc(scores, positive),
        "tpr_at_1%_fpr": tpr_at_fpr(scores, positive, 0.01),
        "tpr_at_1%_fpr_interval": [float(np.percentile(tprs, 2.5)), float(np.percentile(tprs, 97.5))] if len(tprs) > 1 else None,
        "tpr_at_0.1%_fpr": tpr_at_fpr(scores, positive, 0.001),
        "false_positives_at_1%": int(math.floor(0.01 * negatives)),
        "false_positives_at_0.1%": int(math.floor(0.001 * negatives)),
        "reference_models": int(len(stats)),
        "target_models": len(per_model),
        "forgotten_scored": int(positive.sum()),
        "unseen_scored": negatives,
    }


def _pooled_scores(stats, forgotten, unseen, targets=None, fixed_variance=True):
    """(scores, is_forgotten, per-model balanced accuracies) pooled over the target models."""
    stats, forgotten, unseen = np.asarray(stats, float), np.asarray(forgotten, bool), np.asarray(unseen, bool)
    if not (stats.shape == forgotten.shape == unseen.shape) or stats.ndim != 2:
        raise ValueError(
            f"stats, forgotten and unseen must be K x N arrays of one shape, got {stats.shape}, {forgotten.shape}, {unseen.shape}"
        )
    if (forgotten & unseen).any():
        raise ValueError("an example cannot be both forgotten by and unseen to the same model")
    targets = range(len(stats)) if targets is None else targets
    all_scores, all_positive, per_model = [], [], []
    for t in targets:
        scores, positive = target_scores(stats, forgotten, unseen, t, fixed_variance)
        if positive.any() and (~positive).any():
            all_scores.append(scores)
            all_positive.append(positive)
            per_model.append(balanced_accuracy(scores, positive))
    if not all_scores:
        raise ValueError("no target model has both forgotten and never-seen examples with enough reference observations")
    return np.concatenate(all_scores), np.concatenate(all_positive), per_model


def _resamples(n, count, seed):
    rng = np.random.RandomState(seed)
    return [rng.randint(0, n, n) for _ in range(count)]


def auc(scores, positive):
    """The area under the ROC curve of the log likelihood ratio (ties count half)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(positive, scores))


def paired_difference(stats_a, stats_b, forgotten, unseen, bootstrap=500, seed=0, fixed_variance=True):
    """Balanced accuracy of B minus A, for two rows that share targets and shadow halves (the same
    `forgotten` / `unseen`), with a 95% paired-bootstrap interval: each resample draws the same
    examples for both rows, so what the rows share cancels."""
    stats_a, stats_b = np.asarray(stats_a, float), np.asarray(stats_b, float)
    forgotten, unseen = np.asarray(forgotten, bool), np.asarray(unseen, bool)

    def accuracy(stats, columns=slice(None)):
        return ulira(stats[:, columns], forgotten[:, columns], unseen[:, columns], fixed_variance=fixed_variance, bootstrap=0)[
            "balanced_accuracy"
        ]

    differences = []
    for columns in _resamples(stats_a.shape[1], bootstrap, seed):
        try:
            differences.append(accuracy(stats_b, columns) - accuracy(stats_a, columns))
        except ValueError:
            continue
    interval = [float(np.percentile(differences, 2.5)), float(np.percentile(differences, 97.5))] if len(differences) > 1 else None
    return {"difference": accuracy(stats_b) - accuracy(stats_a), "interval": interval, "resamples": len(differences)}


def balanced_accuracy(scores, positive):
    return float(0.5 * ((scores[positive] > 0).mean() + (scores[~positive] <= 0).mean()))


def spread_over_models(stats, forgotten, unseen, sizes, draws=20, seed=0, fixed_variance=True):
    """{k: (mean, std)} of the balanced accuracy over `draws` random subsets of k of the K models.

    How much the estimate moves with the models it rests on: its std shrinks as k grows
    (subsets of one pool overlap, so at k near K this understates a fresh run's spread).
    """
    stats, forgotten, unseen = np.asarray(stats, float), np.asarray(forgotten, bool), np.asarray(unseen, bool)
    rng = np.random.RandomState(seed)
    spread = {}
    for k in sizes:
        if not MIN_MODELS <= k <= len(stats):
            raise ValueError(f"subsets of {k} models: need {MIN_MODELS} <= k <= {len(stats)}")
        values = []
        for _ in range(draws):
            chosen = np.sort(rng.choice(len(stats), size=k, replace=False))
            try:
                report = ulira(stats[chosen], forgotten[chosen], unseen[chosen], fixed_variance=fixed_variance, bootstrap=0)
                values.append(report["balanced_accuracy"])
            except ValueError:  # too few references per example in this draw
                continue
        spread[k] = (float(np.mean(values)), float(np.std(values, ddof=1))) if len(values) > 1 else (float("nan"), float("nan"))
    return spread
