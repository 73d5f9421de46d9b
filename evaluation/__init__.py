"""Evaluation of an unlearned model: accuracy per split, shadow-SVM membership inference, how its weights moved."""

from .metrics import mia_forget_efficacy, mia_training_privacy, paper_metrics, split_accuracies
from .SVC_MIA import FEATURES, SVC_MIA, attack_features, collect_prob, entropy, modified_entropy
from .weights import weight_change

__all__ = [
    "FEATURES",
    "SVC_MIA",
    "attack_features",
    "collect_prob",
    "entropy",
    "mia_forget_efficacy",
    "mia_training_privacy",
    "modified_entropy",
    "paper_metrics",
    "split_accuracies",
    "weight_change",
]
