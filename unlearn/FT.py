"""FT: fine-tune the trained model on the retain set; FT_l1: the same with a decaying l1 penalty.

FT_l1's loss = CE + a_e * ||theta||_1 over all parameters, a_e = alpha * (1 - e / (E -
no_l1_epochs)) for epochs e < E - no_l1_epochs, alpha throughout when E - no_l1_epochs
is 0, and 0 otherwise (the original's `FT_l1`; the paper's l1-sparse, `FT_prune`, runs it).
"""

from .impl import iterative_unlearn


def FT(data_loaders, model, criterion, args):
    return iterative_unlearn(data_loaders, model, args, loader="retain", name="FT")


def l1_weight(epoch, alpha, epochs, no_l1_epochs):
    """a_e of the l1 schedule."""
    l1_epochs = epochs - no_l1_epochs
    if epoch < l1_epochs:
        return alpha * (1 - epoch / l1_epochs)
    return alpha if l1_epochs == 0 else 0.0


def l1_norm(model):
    return sum(p.abs().sum() for p in model.parameters())


def decaying_l1(args):
    """penalty_at(epoch) for iterative_unlearn: a_e * ||theta||_1, or None once a_e is 0."""

    def penalty_at(epoch):
        weight = l1_weight(epoch, args.alpha, args.unlearn_epochs, getattr(args, "no_l1_epochs", 0))
        if weight == 0:
            return None
        return lambda m: weight * l1_norm(m)

    return penalty_at


def FT_l1(data_loaders, model, criterion, args, name="FT_l1"):
    return iterative_unlearn(data_loaders, model, args, loader="retain", penalty_at=decaying_l1(args), name=name)
