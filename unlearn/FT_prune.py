"""l1-sparse, the paper's sparsity-aware unlearning (`FT_prune` in the original): FT_l1.

loss = CE + a_e * ||theta||_1, a_e = alpha * (1 - e / (E - no_l1_epochs)) for epochs
e < E - no_l1_epochs and 0 afterwards (alpha throughout when E - no_l1_epochs = 0).
"""

from .FT import L1_ALPHA, NO_L1_EPOCHS, FT_l1, l1_norm, l1_weight
from .method import Method

__all__ = ["FT_prune", "l1_norm", "l1_weight"]


def FT_prune(data_loaders, model, criterion, args):
    return FT_l1(data_loaders, model, criterion, args, name="l1-sparse")


METHOD = Method(
    "FT_prune",
    FT_prune,
    "l1-sparse",
    "l1-sparse: FT plus a decaying alpha * l1 penalty",
    iterative=True,
    alpha=L1_ALPHA,
    options=(NO_L1_EPOCHS,),
    compared_with="FT",
)
