"""l1-sparse: fine-tune on the retain set with a decaying l1 penalty on all parameters.

loss = CE + a_e * ||theta||_1, a_e = alpha * (1 - e / (E - no_l1_epochs)) for epochs
e < E - no_l1_epochs and 0 afterwards (alpha throughout when E - no_l1_epochs = 0).
"""

from .impl import iterative_unlearn


def l1_weight(epoch, alpha, epochs, no_l1_epochs):
    """a_e of the l1 schedule."""
    l1_epochs = epochs - no_l1_epochs
    if l1_epochs <= 0:
        return alpha
    return alpha * (1 - epoch / l1_epochs) if epoch < l1_epochs else 0.0


def l1_norm(model):
    return sum(p.abs().sum() for p in model.parameters())


def FT_prune(data_loaders, model, criterion, args):
    def penalty_at(epoch):
        weight = l1_weight(epoch, args.alpha, args.unlearn_epochs, args.no_l1_epochs)
        if weight == 0:
            return None
        return lambda m: weight * l1_norm(m)

    return iterative_unlearn(data_loaders, model, args, loader="retain", penalty_at=penalty_at, name="l1-sparse")
