"""Membership inference with shadow SVMs (docs/algorithms.md §7).

Five attack features per sample, from the softmax output p and the label y:
correctness (argmax p == y), confidence (p_y), entropy (-sum p log p), modified
entropy (-(1 - p_y) log p_y - sum_{j != y} p_j log(1 - p_j); the original computed
it wrongly), and the whole vector p. Each feature gets its own SVC(C=3,
gamma="auto", rbf) fit on shadow members (label 1) vs shadow non-members (label 0).
The score is the mean of the share of target members predicted 1 and the share of
target non-members predicted 0 (over the targets that are given).
"""

import os
from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np
import torch
import torch.nn.functional as F

from dataset import num_samples
from trainer import predict

FEATURES = ("correctness", "confidence", "entropy", "m_entropy", "prob")
_TINY = 1e-30


def entropy(prob):
    return -(prob * prob.clamp_min(_TINY).log()).sum(dim=1)


def modified_entropy(prob, labels):
    p_y = prob.gather(1, labels[:, None]).squeeze(1)
    others = prob.scatter(1, labels[:, None], 0.0)
    return -(1 - p_y) * p_y.clamp_min(_TINY).log() - (others * (1 - others).clamp_min(_TINY).log()).sum(dim=1)


def attack_features(prob, labels):
    """{feature name: (n, d) float64 array} for softmax outputs `prob` and `labels`."""
    prob = prob.double()
    columns = {
        "correctness": (prob.argmax(1) == labels).double(),
        "confidence": prob.gather(1, labels[:, None]).squeeze(1),
        "entropy": entropy(prob),
        "m_entropy": modified_entropy(prob, labels),
        "prob": prob,
    }
    return {name: value.reshape(len(labels), -1).cpu().numpy() for name, value in columns.items()}


def collect_prob(loader, model):
    """Softmax outputs and labels over a loader (eval mode)."""
    logits, labels = predict(model, loader)
    return F.softmax(logits.float(), dim=-1), labels


def fit_attack(shadow_train, shadow_test):
    """The SVC of one feature: shadow members (label 1) vs shadow non-members (label 0)."""
    from sklearn.svm import SVC  # here, not at the top: scripts that stop on a bad option start faster

    x = np.concatenate([shadow_train, shadow_test])
    y = np.concatenate([np.ones(len(shadow_train)), np.zeros(len(shadow_test))])
    return SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)


def attack_score(member_predictions, non_member_predictions):
    """Mean of the share of members predicted 1 and of non-members predicted 0 (given ones)."""
    scores = []
    if member_predictions is not None and len(member_predictions):
        scores.append(member_predictions.mean())
    if non_member_predictions is not None and len(non_member_predictions):
        scores.append(1 - non_member_predictions.mean())
    return float(np.mean(scores))


def SVC_fit_predict(shadow_train, shadow_test, target_train, target_test):
    """Fit on shadow members vs non-members; score the targets (either may be None)."""
    clf = fit_attack(shadow_train, shadow_test)
    return attack_score(*(clf.predict(x) if x is not None and len(x) else None for x in (target_train, target_test)))


def default_workers():
    return max(1, min(len(FEATURES), os.cpu_count() or 1))


def _parallel_attacks(feats, workers, chunk_rows=None):
    """{feature: score} with the five fits and their predictions spread over `workers` threads.

    libsvm releases the GIL in fit and predict. A fit's predictions are cut into row
    chunks and queued as soon as the fit ends, so that no thread idles while another
    predicts a large target set alone; every row's prediction, hence every score, is
    the one of the sequential run.
    """
    roles = ("target_train", "target_test")
    # The 10-dimensional `prob` fit is the longest: start it first so that it does not run alone at the end.
    order = ["prob"] + [name for name in FEATURES if name != "prob"]
    predictions = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        fits = {pool.submit(fit_attack, feats["shadow_train"][name], feats["shadow_test"][name]): name for name in order}
        for done in as_completed(fits):
            name, clf = fits[done], done.result()
            for role in roles:
                x = feats[role][name] if feats[role] is not None else None
                if x is None or not len(x):
                    continue
                rows = chunk_rows or max(256, -(-len(x) // (2 * workers)))
                predictions[name, role] = [pool.submit(clf.predict, x[i : i + rows]) for i in range(0, len(x), rows)]
        joined = {key: np.concatenate([chunk.result() for chunk in chunks]) for key, chunks in predictions.items()}
    return {name: attack_score(*(joined.get((name, role)) for role in roles)) for name in FEATURES}


@torch.no_grad()
def SVC_MIA(shadow_train, target_train, target_test, shadow_test, model, workers=None, chunk_rows=None):
    """The five attacks' scores, `{correctness, confidence, entropy, m_entropy, prob}`.

    Each argument but `model` is a loader; `target_train` (members) or `target_test`
    (non-members) may be None or empty. The five SVCs are independent: with `workers` > 1 they
    fit, and predict in chunks of `chunk_rows`, in threads; the scores equal those of
    sequential fitting.
    """
    if not num_samples(shadow_train) or not num_samples(shadow_test):
        raise ValueError("SVC_MIA: the shadow members and non-members must not be empty")
    given = {"shadow_train": shadow_train, "shadow_test": shadow_test, "target_train": target_train, "target_test": target_test}
    roles = {role: loader if loader is not None and num_samples(loader) else None for role, loader in given.items()}
    feats = {role: attack_features(*collect_prob(loader, model)) if loader is not None else None for role, loader in roles.items()}
    workers = workers or default_workers()
    if workers > 1:
        return _parallel_attacks(feats, workers, chunk_rows)
    targets = ("target_train", "target_test")
    return {
        name: SVC_fit_predict(
            feats["shadow_train"][name], feats["shadow_test"][name], *(feats[r][name] if feats[r] is not None else None for r in targets)
        )
        for name in FEATURES
    }
