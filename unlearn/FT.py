"""FT: fine-tune the trained model on the retain set."""

from .impl import iterative_unlearn


def FT(data_loaders, model, criterion, args):
    return iterative_unlearn(data_loaders, model, args, loader="retain", name="FT")
