"""Datasets: `load_dataset(args)` gives a dataset's `Splits` (uint8 images and labels per split,
or for a streamed dataset its file lists), with the size caps applied.

Each dataset file declares its record (`dataset/record.py`: classes and image side, streamed
or held in memory, trigger value, membership-attack cap, its own options); DATASETS collects
them, and `--dataset`'s choices, help, options and checks come from them. No module outside
this package tests a dataset's name. Adding a dataset: write dataset/<name>.py with its loader
and record, list the record below, write its tests (docs/code_layout.md).

The layers, each importing only those below it:
  the sources     cifar, svhn, tiny_imagenet, digits, fashion_mnist, imagenet, imagefolder
  splits          Splits, the fixed val split, the size caps, make_loader
  folders         class-folder trees streamed from disk (FolderSet, StreamLoader)
  tensors         images held as uint8 tensors and their loader (ImageSet, Augment, TensorLoader)
  forget sets     forget.py, positions.py; and trigger.py, the backdoor's
"""

import logging

from options import collect_options

from .cifar import CIFAR10, CIFAR100
from .digits import DIGITS, digits_images, load_digits_splits
from .fashion_mnist import FASHION_MNIST, load_fashion_mnist, read_idx
from .folders import FolderSet, StreamLoader
from .forget import ForgetSet, select_forget_set, unlearning_positions
from .imagefolder import IMAGEFOLDER
from .imagenet import IMAGENET
from .positions import checked_positions, parse_indexes
from .record import Dataset
from .splits import Splits, apply_caps, holdout_per_class, keep_per_class, make_loader
from .svhn import SVHN
from .tensors import Augment, ImageSet, TensorLoader, in_order, num_samples, with_batch_size
from .tiny_imagenet import TINY_IMAGENET
from .trigger import add_trigger

log = logging.getLogger("unlearn_sparse")

# The order of --help and of docs/data.md's table.
DATASETS = {record.name: record for record in (CIFAR10, CIFAR100, SVHN, TINY_IMAGENET, DIGITS, FASHION_MNIST, IMAGENET, IMAGEFOLDER)}

__all__ = [
    "DATASETS", "Augment", "Dataset", "FolderSet", "ForgetSet", "ImageSet", "Splits", "StreamLoader", "TensorLoader",
    "add_trigger", "checked_positions", "dataset_options", "digits_images", "get_dataset", "holdout_per_class", "in_order",
    "keep_per_class", "load_dataset", "load_digits_splits", "load_fashion_mnist", "make_loader", "num_samples", "parse_indexes",
    "read_idx", "select_forget_set", "unlearning_positions", "with_batch_size",
]  # fmt: skip


def get_dataset(name):
    """The record of the dataset called `name`."""
    return DATASETS[name]


def dataset_options():
    """{option name: (Option, [datasets that read it])}, every dataset's own option once, in the registry's order."""
    return collect_options(DATASETS.values())


def load_dataset(args):
    """The dataset named by `args.dataset`, with `--no-aug` and the size caps applied.

    --train_per_class N keeps N training images of each class (the validation split set
    aside first); --test_per_class M keeps M of each class in the validation and test splits.
    """
    splits = DATASETS[args.dataset].load(args)
    if getattr(args, "no_aug", False):
        splits.augment = None
    caps = apply_caps(splits, args)
    log.info("%s: %d train, %d val, %d test images%s", splits.name, len(splits.train), len(splits.val), len(splits.test), caps)
    return splits
