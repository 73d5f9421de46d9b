"""FT: fine-tune the trained model on the retain set; FT_l1: the same with a decaying l1 penalty.

FT_l1's loss = CE + a_e * ||theta||_1 over all parameters, a_e = alpha * (1 - e / (E -
no_l1_epochs)) for epochs e < E - no_l1_epochs, alpha throughout when E - no_l1_epochs
is 0, and 0 otherwise (the original's `FT_l1`; the paper's l1-sparse, `FT_prune`, runs it).
"""

from options import Option

from .loop import iterative_unlearn
from .method import Method


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
        weight = l1_weight(epoch, args.alpha, args.unlearn_epochs, args.no_l1_epochs)
        if weight == 0:
            return None
        return lambda m: weight * l1_norm(m)

    return penalty_at


def FT_l1(data_loaders, model, criterion, args, name="FT_l1"):
    return iterative_unlearn(data_loaders, model, args, loader="retain", penalty_at=decaying_l1(args), name=name)


NO_L1_EPOCHS = Option(
    "no_l1_epochs",
    0,
    "l1-sparse: final epochs without the l1 penalty",
    type=int,
    flag="--no-l1-epochs",
    check=lambda v: None if v >= 0 else f"--no-l1-epochs {v}: must be 0 or more",
)
L1_ALPHA = 1e-3  # works on the bundled data; the literature uses about 1e-4 on CIFAR-10 (docs/methods.md)
FT_METHOD = Method("FT", FT, "FT", "FT: fine-tune on the retain set", iterative=True)
FT_L1_METHOD = Method(
    "FT_l1",
    FT_l1,
    "FT_l1",
    "FT_l1: the computation of l1-sparse under the original's other name",
    iterative=True,
    alpha=L1_ALPHA,
    options=(NO_L1_EPOCHS,),
)
