"""GA: gradient ascent on the forget set (loss = minus cross-entropy)."""

from .impl import iterative_unlearn


def GA(data_loaders, model, criterion, args):
    return iterative_unlearn(data_loaders, model, args, loader="forget", loss_sign=-1.0, name="GA")
