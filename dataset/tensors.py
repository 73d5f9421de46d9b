"""Images held as uint8 tensors and the loaders that batch them (the tensor layer of the data).

Every split is held once as an `ImageSet` (images uint8 N x C x H x W, labels int64).
Retain, forget, val and test are index arrays into those tensors; a `TensorLoader`
batches an index array, shuffles with a seeded generator and augments per batch with
tensor operations (`Augment`: random crop with zero padding, horizontal flip). Images
reach the model as float in [0, 1]: normalisation is the model's first layer. The helpers
at the end (`in_order`, `with_batch_size`, `num_samples`) take these loaders and ordinary
`torch.utils.data.DataLoader`s alike. A streamed data set's loader (`dataset/folders.py`'s
`StreamLoader`) is a TensorLoader too.
"""

import copy
import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from distributed import rank_share

log = logging.getLogger("unlearn_sparse")


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8, N x C x H x W
    labels: torch.Tensor  # int64, N

    def __len__(self):
        return len(self.labels)

    def to(self, device):
        return ImageSet(self.images.to(device), self.labels.to(device))

    def select(self, positions):
        """The images at `positions` (an index array), as a new ImageSet."""
        return ImageSet(self.images[positions], self.labels[positions])


@dataclass
class Augment:
    """Random `size` crop of the image zero-padded by `padding`, optional horizontal flip.

    `draw` takes a batch's random numbers from the CPU generator (rows of dy, dx, flip),
    `apply` crops and flips on the images' device; a loader draws a whole epoch's at its
    start and moves them to the device once.
    """

    size: int
    padding: int = 4
    flip: bool = True

    def draw(self, n, generator, side):
        """(n, 3) int64 rows of (dy, dx, flip) for n images of `side` pixels, drawn in the order the augmentation always drew them."""
        zeros = torch.zeros(n, dtype=torch.long)
        if not self.padding:
            flip = (torch.rand(n, generator=generator) < 0.5).long() if self.flip else zeros
            return torch.stack([zeros, zeros, flip], dim=1)
        max_offset = side + 2 * self.padding - self.size  # the padded side minus the crop
        dy = torch.randint(0, max_offset + 1, (n,), generator=generator)
        dx = torch.randint(0, max_offset + 1, (n,), generator=generator)
        flip = (torch.rand(n, generator=generator) < 0.5).long() if self.flip else zeros
        return torch.stack([dy, dx, flip], dim=1)

    def apply(self, images, draws):
        """The crops and flips `draws` (on the images' device) describe."""
        n, channels = images.shape[:2]
        flip = draws[:, 2].bool()
        if not self.padding:
            return torch.where(flip[:, None, None, None], images.flip(-1), images) if self.flip else images
        padded = F.pad(images, (self.padding,) * 4)
        steps = torch.arange(self.size, device=images.device)
        cols = draws[:, 1, None] + steps
        if self.flip:  # a flipped crop reads its columns right to left
            cols = torch.where(flip[:, None], cols.flip(-1), cols)
        # Crop and flip as one gather over each padded image's flattened pixels.
        pixels = (draws[:, 0, None, None] + steps[:, None]) * padded.shape[-1] + cols[:, None, :]
        index = pixels.reshape(n, 1, -1).expand(n, channels, -1)
        return padded.flatten(2).gather(2, index).view(n, channels, self.size, self.size)

    def __call__(self, images, generator):
        return self.apply(images, self.draw(len(images), generator, images.shape[-1]).to(images.device))


class TensorLoader:
    """Batches of `(images float [0,1], labels)` from an index array into an ImageSet.

    Shuffling and augmentation draw from one seeded CPU generator, so the data order
    is the same on every device and can be saved and restored (`generator_state`).
    """

    def __init__(self, data, indices=None, batch_size=256, shuffle=False, augment=None, seed=0):
        self.data = data
        if indices is None:
            indices = torch.arange(len(data))
        self.indices = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self):
        return len(self.batch_bounds())

    def batch_bounds(self):
        """(start, stop) of each batch in the epoch's order.

        A shuffled (training) loader whose last batch would hold a single image merges it
        into the batch before: batch norm in training mode cannot learn from one image
        (docs/differences.md). The original keeps that batch.
        """
        n = len(self.indices)
        bounds = [(start, min(start + self.batch_size, n)) for start in range(0, n, self.batch_size)]
        if self.shuffle and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
            bounds[-2:] = [(bounds[-2][0], n)]
            _note_merged_batch(n, self.batch_size)
        return bounds

    @property
    def num_samples(self):
        return len(self.indices)

    @property
    def labels(self):
        return self.data.labels[self.indices.to(self.data.labels.device)]

    part = None  # (rank, world): yield only that rank's share of every batch (split_for_rank)
    block = None  # (first, stop): yield only these batches (batch_block)

    def global_batch_sizes(self):
        """The size of every global batch this loader's ranks share, in order (those it yields)."""
        world = self.part[1] if self.part is not None else 1
        return [stop - start for start, stop in self.batch_bounds() if stop - start >= world]

    def __iter__(self):
        # The epoch's order and every batch's augmentation are drawn from the CPU generator at
        # its start (the same numbers, in the same order, as drawn batch by batch), then moved
        # to the device once: no host-to-device copy or synchronisation per batch.
        order = self.indices
        if self.shuffle:
            order = order[torch.randperm(len(order), generator=self.generator)]
        bounds = self.batch_bounds()
        device = self.data.images.device
        draws = None
        if self.augment is not None:
            # every batch's draws, also those another rank yields, so that each rank's
            # images are augmented as one process would augment them
            side = self.data.images.shape[-1]
            draws = [self.augment.draw(stop - start, self.generator, side) for start, stop in bounds]
            draws = torch.cat(draws).to(device, non_blocking=True)
        order = order.to(device, non_blocking=True)
        for number, (start, stop) in enumerate(bounds):
            if self.block is not None and not self.block[0] <= number < self.block[1]:
                continue  # another rank's batch
            if self.part is not None:
                if stop - start < self.part[1]:
                    continue  # fewer images than processes, which every rank skips alike
                start, stop = (start + edge for edge in rank_share(stop - start, *self.part))
            idx = order[start:stop]
            images = self.data.images[idx]
            if draws is not None:
                images = self.augment.apply(images, draws[start:stop])
            yield images.float().div_(255), self.data.labels[idx]

    def split_for_rank(self, rank, world):
        """This loader (its generator shared) yielding only `rank`'s share of each batch of `world` ranks."""
        view = copy.copy(self)
        view.part = (rank, world)
        return view

    def batch_block(self, start, stop):
        """Batches start..stop-1 of this unshuffled loader (a loader of its own, augmented as they would be in a full pass)."""
        if self.shuffle:
            raise ValueError("batch_block splits an unshuffled loader")
        view = TensorLoader(self.data, self.indices, self.batch_size, shuffle=False, augment=self.augment, seed=self.seed)
        view.block = (start, stop)
        return view

    def in_order(self, batch_size=None, limit=None):
        """The same samples (the first `limit` of them) and augmentation, in dataset order."""
        indices = self.indices[:limit]
        return type(self)(self.data, indices, batch_size or self.batch_size, shuffle=False, augment=self.augment, seed=self.seed)

    def subset(self, start=None, stop=None):
        """Positions `start:stop` of this loader's samples (in dataset order), no augmentation."""
        return type(self)(self.data, self.indices[start:stop], self.batch_size, shuffle=False, augment=None, seed=self.seed)

    def drawn(self, count, seed=1):
        """`count` of this loader's samples drawn at random with a fixed seed, in the drawn order,
        no augmentation: a fair sample of a set stored class by class (ImageNet's), whose first
        `count` samples would be a few classes."""
        order = torch.randperm(len(self.indices), generator=torch.Generator().manual_seed(seed))[:count]
        return type(self)(self.data, self.indices[order], self.batch_size, shuffle=False, augment=None, seed=self.seed)

    def generator_state(self):
        return self.generator.get_state()

    def set_generator_state(self, state):
        self.generator.set_state(state.cpu())  # the generator is a CPU one, the checkpoint may be on the GPU


_merged_noted = set()


def _note_merged_batch(count, batch_size):
    """One log line per (set size, batch size) whose last training batch was merged."""
    if (count, batch_size) not in _merged_noted:
        _merged_noted.add((count, batch_size))
        log.info(
            "%d training images in batches of %d: the last batch would hold one image, so it joins the batch before (docs/differences.md)",
            count,
            batch_size,
        )


def _is_ours(loader):
    return isinstance(loader, TensorLoader)  # a StreamLoader is one too


def in_order(loader, batch_size=None, limit=None):
    """The loader's samples (the first `limit` of them) in dataset order, unshuffled.

    A TensorLoader keeps its augmentation; an ordinary `torch.utils.data.DataLoader` (how
    code built on the original calls a method) keeps its dataset and its transform.
    """
    if _is_ours(loader):
        return loader.in_order(batch_size=batch_size, limit=limit)
    from torch.utils.data import DataLoader, Subset

    data = loader.dataset
    if limit is not None and limit < len(data):
        data = Subset(data, range(limit))
    return DataLoader(
        data,
        batch_size=batch_size or loader.batch_size or 1,
        shuffle=False,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
    )


def with_batch_size(loader, batch_size, augment=True):
    """The same samples and shuffling in batches of `batch_size` (a loader of its own), with the
    loader's augmentation or, `augment=False`, none (an ordinary DataLoader keeps its dataset's transforms)."""
    if _is_ours(loader):
        return type(loader)(loader.data, loader.indices, batch_size, loader.shuffle, loader.augment if augment else None, loader.seed)
    from torch.utils.data import DataLoader, RandomSampler

    shuffle = isinstance(loader.sampler, RandomSampler)
    return DataLoader(loader.dataset, batch_size=batch_size, shuffle=shuffle, num_workers=loader.num_workers, collate_fn=loader.collate_fn)


def num_samples(loader):
    """How many samples a TensorLoader or a DataLoader holds."""
    return loader.num_samples if _is_ours(loader) else len(loader.dataset)
