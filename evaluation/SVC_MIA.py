"""Membership inference with shadow SVMs (SPEC section 7).

Five attack features per sample, from the softmax output p and the label y:
correctness (argmax p == y), confidence (p_y), entropy (-sum p log p), modified
entropy (-(1 - p_y) log p_y - sum_{j != y} p_j log(1 - p_j); the original computed
it wrongly), and the whole vector p. Each feature gets its own SVC(C=3,
gamma="auto", rbf) fit on shadow members (label 1) vs shadow non-members (label 0).
The score is the mean of the share of target members predicted 1 and the share of
target non-members predicted 0 (over the targets that are given).
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.svm import SVC

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


def SVC_fit_predict(shadow_train, shadow_test, target_train, target_test):
    """Fit on shadow members vs non-members; score the targets (either may be None)."""
    x = np.concatenate([shadow_train, shadow_test])
    y = np.concatenate([np.ones(len(shadow_train)), np.zeros(len(shadow_test))])
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(x, y)
    scores = []
    if target_train is not None and len(target_train):
        scores.append(clf.predict(target_train).mean())
    if target_test is not None and len(target_test):
        scores.append(1 - clf.predict(target_test).mean())
    return float(np.mean(scores))


def default_workers():
    return max(1, min(len(FEATURES), os.cpu_count() or 1))


@torch.no_grad()
def SVC_MIA(shadow_train, target_train, target_test, shadow_test, model, workers=None):
    """The five attacks' scores, `{correctness, confidence, entropy, m_entropy, prob}`.

    Each argument but `model` is a loader; `target_train` (members) or `target_test`
    (non-members) may be None. The five SVCs are independent and fit in `workers`
    threads (libsvm releases the GIL); the scores equal those of sequential fitting.
    """
    roles = {"shadow_train": shadow_train, "shadow_test": shadow_test, "target_train": target_train, "target_test": target_test}
    feats = {role: attack_features(*collect_prob(loader, model)) if loader is not None else None for role, loader in roles.items()}

    def attack(name):
        targets = [feats[role][name] if feats[role] is not None else None for role in ("target_train", "target_test")]
        return SVC_fit_predict(feats["shadow_train"][name], feats["shadow_test"][name], *targets)

    workers = workers or default_workers()
    if workers == 1:
        return {name: attack(name) for name in FEATURES}
    # The 10-dimensional `prob` fit is the longest: start it first so that it does not run alone at the end.
    order = ["prob"] + [name for name in FEATURES if name != "prob"]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        scores = dict(zip(order, pool.map(attack, order)))
    return {name: scores[name] for name in FEATURES}
