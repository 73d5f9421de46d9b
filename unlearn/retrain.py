"""Retrain: train from scratch on the retain set (the exact-unlearning reference).

`main_forget.py` hands this method a freshly initialised model carrying the mask.
"""

from .loop import iterative_unlearn
from .method import REFERENCE, Method


def retrain(data_loaders, model, criterion, args):
    return iterative_unlearn(data_loaders, model, args, loader="retain", name="retrain")


METHOD = Method(
    "retrain",
    retrain,
    "Retrain",
    "Retrain: train the initialisation --train_seed gives (with the mask) on the retain set",
    iterative=True,
    from_scratch=True,
    role=REFERENCE,
)
