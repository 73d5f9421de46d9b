"""FT_prune_bi: fine-tune on the retain set while pruning to --rate (the original's `FT_prune_bi`).

At the start of every epoch e with (E - e) even (so the last prune is two epochs before
the end), global L1 (or, with --random_prune, random) pruning removes the same share of
the remaining conv weights, chosen so that --rate of them are gone after the last step:
1 - (1 - rate) ** (1 / steps). The loss is plain cross-entropy, as FT.
"""

import logging

import pruner

from .loop import iterative_unlearn
from .method import Method

log = logging.getLogger("unlearn_sparse")

PRUNE_EVERY = 2


def prune_epochs(epochs):
    """The epochs that start with a pruning step."""
    return [e for e in range(epochs) if (epochs - e) % PRUNE_EVERY == 0]


def FT_prune_bi(data_loaders, model, criterion, args):
    steps = prune_epochs(args.unlearn_epochs)
    share = 1 - (1 - args.rate) ** (1 / len(steps)) if steps else 0.0
    prune = pruner.pruning_model_random if args.random_prune else pruner.pruning_model

    def before_epoch(epoch, model):
        if epoch in steps:
            prune(model, share)
            log.info("FT_prune_bi: pruned %.4g of the remaining conv weights, conv sparsity now %.2f%%", share, pruner.sparsity(model))

    return iterative_unlearn(data_loaders, model, args, loader="retain", before_epoch=before_epoch, name="FT_prune_bi")


METHOD = Method(
    "FT_prune_bi",
    FT_prune_bi,
    "FT_prune_bi",
    "FT while pruning --rate of the remaining conv weights, every second epoch",
    iterative=True,
    prunes=True,
)
