"""RL, random labels (SalUn's `unlearn/RL.py`, the path it takes on CIFAR-10 and SVHN).

Every epoch: one pass over the forget set with labels drawn uniformly at random for each
batch, then one pass over the retain set with the true labels; cross-entropy and the
iterative methods' SGD. The labels come from a CPU generator of their own, seeded with
--seed and kept in the per-epoch checkpoints: the same on every device and whatever
loaders the method is given.
"""

import torch

from .loop import Pass, iterative_unlearn
from .method import Method


def random_labels(num_classes, generator):
    """relabel(images, labels, share) for a pass: uniformly random classes, drawn per batch from `generator`."""

    def relabel(images, labels, share):
        # under torchrun: the labels of the whole global batch (share: this rank's start, stop and the total), then this rank's part
        start, stop, total = share
        return torch.randint(0, num_classes, (total,), generator=generator)[start:stop].to(labels.device, non_blocking=True)

    return relabel


def random_label_training(data_loaders, model, args, name, optimizer_class=None):
    """Each epoch the forget set with random labels, then the retain set (RL and SalUn)."""
    labels = torch.Generator().manual_seed(args.seed)
    forget, retain = Pass("forget", relabel=random_labels(args.num_classes, labels)), Pass("retain")
    return iterative_unlearn(
        data_loaders,
        model,
        args,
        passes=lambda epoch: [forget, retain],
        optimizer_class=optimizer_class,
        generators={"labels": labels},
        name=name,
    )


def RL(data_loaders, model, criterion, args):
    return random_label_training(data_loaders, model, args, "RL")


METHOD = Method(
    "RL",
    RL,
    "RL",
    "random labels: each epoch the forget set with random labels, then the retain set (SalUn's RL)",
    iterative=True,
)
