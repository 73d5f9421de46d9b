"""Retrain: train from scratch on the retain set (the exact-unlearning reference).

`main_forget.py` hands this method a freshly initialised model carrying the mask.
"""

from .impl import iterative_unlearn


def retrain(data_loaders, model, criterion, args):
    return iterative_unlearn(data_loaders, model, args, loader="retain", name="retrain")
