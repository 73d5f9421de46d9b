"""GA: gradient ascent on the forget set (loss = minus cross-entropy); GA_l1 adds alpha * ||theta||_1.

GA_l1's penalty keeps the same weight alpha in every epoch (the original's `GA_l1`).
"""

from .FT import l1_norm
from .impl import iterative_unlearn


def GA(data_loaders, model, criterion, args):
    return iterative_unlearn(data_loaders, model, args, loader="forget", loss_sign=-1.0, name="GA")


def GA_l1(data_loaders, model, criterion, args):
    def penalty_at(epoch):
        return lambda m: args.alpha * l1_norm(m)

    return iterative_unlearn(data_loaders, model, args, loader="forget", loss_sign=-1.0, penalty_at=penalty_at, name="GA_l1")
