"""A dataset as loaded (`Splits`), the fixed train / val split, the size caps, the loaders.

Splits (docs/algorithms.md §2): the val set is 10% of every class of the training data,
drawn with seed 1 whatever `--seed` is, so every script sees the same training split.
`make_loader` gives the loader that fits the data: a TensorLoader over images held in
memory, a StreamLoader over a folder tree.
"""

from dataclasses import dataclass, field

import numpy as np
import torch

from .folders import FolderSet, StreamLoader
from .positions import checked_positions, parse_indexes
from .tensors import Augment, ImageSet, TensorLoader

SPLIT_SEED = 1  # the seed the original drew its train/val split with
VAL_FRACTION = 0.1
CAP_SEED = 1  # the subsets kept by --train_per_class / --test_per_class, whatever --seed is


@dataclass
class Splits:
    """A dataset as loaded: train / val / test image sets and what the model needs."""

    name: str
    train: ImageSet | FolderSet
    val: ImageSet | FolderSet
    test: ImageSet | FolderSet
    num_classes: int
    mean: tuple
    std: tuple
    augment: Augment | None = None
    info: dict = field(default_factory=dict)

    @property
    def input_shape(self):
        """C x H x W of the images the model sees."""
        if isinstance(self.train, ImageSet):
            return tuple(self.train.images.shape[1:])
        return (3, self.train.crop, self.train.crop)


def make_loader(data, indices=None, batch_size=256, shuffle=False, augment=None, seed=0):
    """A TensorLoader over an ImageSet, a StreamLoader over a FolderSet (read from disk)."""
    if isinstance(data, ImageSet):
        return TensorLoader(data, indices, batch_size, shuffle, augment, seed)
    return StreamLoader(data, indices, batch_size, shuffle, augment, seed)


# ---------------------------------------------------------------- the fixed splits


def holdout_per_class(labels, fraction=VAL_FRACTION, seed=SPLIT_SEED):
    """(train positions, val positions): `fraction` of every class held out, seeded.

    Draws exactly as the original did (numpy RandomState, class by class), so the
    val set on CIFAR is the original's.
    """
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    val = [rng.choice(np.flatnonzero(labels == c), int(fraction * np.sum(labels == c)), replace=False) for c in range(labels.max() + 1)]
    val = np.hstack(val).astype(np.int64)
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val


def split_train_val(images, labels):
    """(train, val) ImageSets of a training split held in memory: the fixed val split set aside."""
    train_pos, val_pos = holdout_per_class(labels)
    images, labels = torch.as_tensor(images), torch.as_tensor(np.asarray(labels), dtype=torch.long)
    return ImageSet(images[train_pos], labels[train_pos]), ImageSet(images[val_pos], labels[val_pos])


def hwc_to_chw(array):
    """N x H x W x C images (as numpy and PIL give them) as an N x C x H x W tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(array).transpose(0, 3, 1, 2)))


# ---------------------------------------------------------------- the size caps


def keep_per_class(image_set, per_class, seed=CAP_SEED):
    """A fixed, seeded subset of at most `per_class` images of every class (in their original order)."""
    labels = image_set.labels.numpy()
    rng = np.random.RandomState(seed)
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]))
    return image_set.select(keep)


def keep_positions(image_set, value):
    """The training images at the positions --train_positions lists (sorted, each once)."""
    keep = checked_positions(parse_indexes(value, "--train_positions"), len(image_set), "--train_positions")
    return image_set.select(keep)


def apply_caps(splits, args):
    """`splits` with --train_per_class, --test_per_class and --train_positions applied (in that order);
    returns the note the load's log line ends with."""
    train_cap, test_cap = getattr(args, "train_per_class", None), getattr(args, "test_per_class", None)
    if train_cap is not None:
        splits.train = keep_per_class(splits.train, train_cap)
    if test_cap is not None:
        splits.val, splits.test = keep_per_class(splits.val, test_cap), keep_per_class(splits.test, test_cap)
    if getattr(args, "train_positions", None) is not None:
        splits.train = keep_positions(splits.train, args.train_positions)
    note = f" (at most {train_cap} / {test_cap} per class)" if train_cap or test_cap else ""
    note += f" (the {len(splits.train)} positions in {args.train_positions})" if getattr(args, "train_positions", None) else ""
    return note
