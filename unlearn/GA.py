"""GA: gradient ascent on the forget set (loss = minus cross-entropy); GA_l1 adds alpha * ||theta||_1.

GA_l1's penalty keeps the same weight alpha in every epoch (the original's `GA_l1`).
"""

from .FT import L1_ALPHA, l1_norm
from .loop import iterative_unlearn
from .method import Method


def GA(data_loaders, model, criterion, args):
    return iterative_unlearn(data_loaders, model, args, loader="forget", loss_sign=-1.0, name="GA")


def GA_l1(data_loaders, model, criterion, args):
    def penalty_at(epoch):
        return lambda m: args.alpha * l1_norm(m)

    return iterative_unlearn(data_loaders, model, args, loader="forget", loss_sign=-1.0, penalty_at=penalty_at, name="GA_l1")


GA_METHOD = Method("GA", GA, "GA", "GA: gradient ascent on the forget set", iterative=True)
GA_L1_METHOD = Method("GA_l1", GA_l1, "GA_l1", "GA_l1: GA plus a constant alpha * l1 penalty", iterative=True, alpha=L1_ALPHA)
