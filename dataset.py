"""Datasets as uint8 tensors, the fixed train/val split, forget sets, and tensor loaders.

Every split is held once as an `ImageSet` (images uint8 N x C x H x W, labels int64).
Retain, forget, val and test are index arrays into those tensors; a `TensorLoader`
batches an index array, shuffles with a seeded generator and augments per batch with
tensor operations (random crop with zero padding, horizontal flip). Images reach the
model as float in [0, 1]: normalisation is the model's first layer.

Splits (docs/algorithms.md §2): the val set is 10% of every class of the training data,
drawn with seed 1 whatever `--seed` is, so every script sees the same training split.
"""

import copy
import logging
import os
import socket
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from utils import UserError

log = logging.getLogger("unlearn_sparse")

SPLIT_SEED = 1  # the seed the original drew its train/val split with
VAL_FRACTION = 0.1
DIGITS_TEST_SIZE = 360  # 20% of scikit-learn's 1,797 digits, stratified, fixed
DOWNLOAD_TIMEOUT_S = 30


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


@dataclass
class Splits:
    """A dataset as loaded: train / val / test image sets and what the model needs."""

    name: str
    train: ImageSet
    val: ImageSet
    test: ImageSet
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
        from image_folder import CROP

        return (3, CROP, CROP)


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


# ---------------------------------------------------------------- any loader the methods get

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


def rank_share(count, rank, world):
    """(start, stop): rank's contiguous share of `count` items split as evenly as possible over `world` ranks."""
    base, extra = divmod(count, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def make_loader(data, indices=None, batch_size=256, shuffle=False, augment=None, seed=0):
    """A TensorLoader over an ImageSet, a StreamLoader over a FolderSet (ImageNet, read from disk)."""
    if isinstance(data, ImageSet):
        return TensorLoader(data, indices, batch_size, shuffle, augment, seed)
    from image_folder import StreamLoader

    return StreamLoader(data, indices, batch_size, shuffle, augment, seed)


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


def _split_train_val(images, labels):
    train_pos, val_pos = holdout_per_class(labels)
    images, labels = torch.as_tensor(images), torch.as_tensor(np.asarray(labels), dtype=torch.long)
    return ImageSet(images[train_pos], labels[train_pos]), ImageSet(images[val_pos], labels[val_pos])


def _hwc_to_chw(array):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(array).transpose(0, 3, 1, 2)))


# ---------------------------------------------------------------- dataset readers


def _missing(name, folder, layout, reason):
    return UserError(
        f"{name} not found in {folder!r} (expected {layout}) and it could not be downloaded "
        f"({reason}); put the data there with --data, or use --dataset digits"
    )


def _torchvision_dataset(cls, name, folder, layout, **kwargs):
    """Open a torchvision dataset, downloading it if absent; one clear line on failure."""
    try:
        return cls(folder, download=False, **kwargs)
    except RuntimeError:
        pass  # not there (or incomplete): try a download
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        log.info("%s not found in %s: downloading", name, folder)
        return cls(folder, download=True, **kwargs)
    except Exception as err:  # noqa: BLE001 - any download failure means the same to the user
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise _missing(name, folder, layout, reason) from None
    finally:
        socket.setdefaulttimeout(previous)


def load_cifar(name, data_dir):
    from torchvision.datasets import CIFAR10, CIFAR100

    cls, sub = (CIFAR10, "cifar-10-batches-py") if name == "cifar10" else (CIFAR100, "cifar-100-python")
    layout = os.path.join(data_dir, sub) + "/"
    train = _torchvision_dataset(cls, name, data_dir, layout, train=True)
    test = _torchvision_dataset(cls, name, data_dir, layout, train=False)
    train_set, val_set = _split_train_val(_hwc_to_chw(train.data), train.targets)
    test_set = ImageSet(_hwc_to_chw(test.data), torch.as_tensor(test.targets, dtype=torch.long))
    if name == "cifar10":
        stats = dict(num_classes=10, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
    else:
        stats = dict(num_classes=100, mean=(0.5071, 0.4866, 0.4409), std=(0.2673, 0.2564, 0.2762))
    return Splits(name, train_set, val_set, test_set, augment=Augment(32, 4, flip=True), **stats)


def load_svhn(data_dir):
    from torchvision.datasets import SVHN

    layout = f"{os.path.join(data_dir, 'train_32x32.mat')} and test_32x32.mat"
    train = _torchvision_dataset(SVHN, "svhn", data_dir, layout, split="train")
    test = _torchvision_dataset(SVHN, "svhn", data_dir, layout, split="test")
    train_set, val_set = _split_train_val(torch.from_numpy(train.data), train.labels)
    test_set = ImageSet(torch.from_numpy(test.data), torch.as_tensor(test.labels, dtype=torch.long))
    return Splits(
        "svhn", train_set, val_set, test_set, num_classes=10, mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970), augment=None
    )


def _read_image_files(paths, what):
    from PIL import Image
    from tqdm import tqdm

    images = []
    for path in tqdm(paths, desc=f"reading {what}", leave=False):
        with Image.open(path) as img:
            images.append(np.asarray(img.convert("RGB")))
    return _hwc_to_chw(np.stack(images))


def load_tiny_imagenet(data_dir):
    """Tiny-ImageNet from its own layout, read-only: train/<wnid>/images/*, val/ (test = val).

    val/ may be the download's layout (val/images + val_annotations.txt) or one folder
    per class; the user's files are never moved or renamed.
    """
    from torchvision.datasets import ImageFolder

    layout = f"{os.path.join(data_dir, 'train')}/<wnid>/images/*.JPEG and {os.path.join(data_dir, 'val')}/"
    train_dir, val_dir = os.path.join(data_dir, "train"), os.path.join(data_dir, "val")
    if not (os.path.isdir(train_dir) and os.path.isdir(val_dir)):
        raise UserError(f"TinyImagenet not found in {data_dir!r} (expected {layout}); set --data_dir, or use --dataset digits")
    train_folder = ImageFolder(train_dir)
    class_to_idx = train_folder.class_to_idx
    annotations = os.path.join(val_dir, "val_annotations.txt")
    if os.path.isfile(annotations):
        with open(annotations) as f:
            rows = [line.split("\t")[:2] for line in f if line.strip()]
        val_samples = [(os.path.join(val_dir, "images", file), class_to_idx[wnid]) for file, wnid in rows]
    else:
        val_samples = ImageFolder(val_dir).samples
        names = ImageFolder(val_dir).classes
        val_samples = [(path, class_to_idx[names[label]]) for path, label in val_samples]
    train_set = ImageSet(
        _read_image_files([p for p, _ in train_folder.samples], "train"), torch.tensor([t for _, t in train_folder.samples])
    )
    val_set = ImageSet(_read_image_files([p for p, _ in val_samples], "val"), torch.tensor([t for _, t in val_samples]))
    return Splits(
        "TinyImagenet",
        train_set,
        val_set,
        val_set,
        num_classes=len(class_to_idx),
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        augment=Augment(64, 4, flip=True),
    )


def digits_images(size=32):
    """scikit-learn's 1,797 bundled 8x8 digits as uint8 3 x size x size images, and labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = torch.as_tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
    big = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    images = (big.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    return images, np.asarray(bunch.target, dtype=np.int64)


def load_digits_splits():
    from sklearn.model_selection import train_test_split

    images, labels = digits_images()
    positions = np.arange(len(labels))
    pool, test = train_test_split(positions, test_size=DIGITS_TEST_SIZE, stratify=labels, random_state=0)
    pool, test = np.sort(pool), np.sort(test)
    train_set, val_set = _split_train_val(images[pool], labels[pool])
    test_set = ImageSet(images[test], torch.as_tensor(labels[test]))
    pixels = train_set.images.float() / 255
    mean = tuple(pixels.mean(dim=(0, 2, 3)).tolist())
    std = tuple(pixels.std(dim=(0, 2, 3)).tolist())
    # A mirrored digit is another glyph: crop only.
    return Splits("digits", train_set, val_set, test_set, num_classes=10, mean=mean, std=std, augment=Augment(32, 4, flip=False))


# Where Debian's package dataset-fashion-mnist puts the four files of the original release.
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Channel statistics of the 60,000 training images zero-padded to 32x32.
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2190, 0.3318


def read_idx(path):
    """An IDX file of the MNIST releases (gzipped or not) as a numpy uint8 array."""
    import gzip

    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        dims = data[3]
        if data[:3] != b"\x00\x00\x08":
            raise ValueError("not an IDX file of unsigned bytes")
        shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
        return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)
    except (OSError, ValueError, IndexError, EOFError) as err:
        raise UserError(
            f"cannot read {path}: {err}; the file is damaged (reinstall it, or remove it so that it is fetched again)"
        ) from None


def _release_files(folder):
    """{split: (images path, labels path)} when the folder holds all four files (gzipped or not), else None."""
    found = {}
    for split, names in FASHION_MNIST_FILES.items():
        paths = [next((p for p in (os.path.join(folder, n), os.path.join(folder, n + ".gz")) if os.path.isfile(p)), None) for n in names]
        if None in paths:
            return None
        found[split] = paths
    return found


def load_fashion_mnist(data_dir):
    """Fashion-MNIST (Zalando, 70,000 28x28 greyscale images, 10 classes), read, never modified.

    From --data in torchvision's layout (`<data>/FashionMNIST/raw/`), else from Debian's
    package folder, else downloaded into --data by torchvision; else one clear error.
    Images are zero-padded by 2 pixels to 32x32 and given three channels, so every
    architecture takes them as CIFAR images.
    """
    files = _release_files(os.path.join(data_dir, "FashionMNIST", "raw")) or _release_files(FASHION_MNIST_SYSTEM_DIR)
    if files is None:
        from torchvision.datasets import FashionMNIST

        layout = f"{os.path.join(data_dir, 'FashionMNIST', 'raw')}/ or {FASHION_MNIST_SYSTEM_DIR}/"
        try:
            _torchvision_dataset(FashionMNIST, "fashionmnist", data_dir, layout, train=True)
            _torchvision_dataset(FashionMNIST, "fashionmnist", data_dir, layout, train=False)
        except UserError as err:
            raise UserError(
                f"{err}. Install it with `apt-get install dataset-fashion-mnist` (Debian's package, no network needed), "
                "or run once where torchvision can download it into --data"
            ) from None
        files = _release_files(os.path.join(data_dir, "FashionMNIST", "raw"))

    def images_and_labels(split):
        images, labels = (read_idx(path) for path in files[split])
        padded = F.pad(torch.from_numpy(images.copy())[:, None], (2, 2, 2, 2))
        return padded.expand(-1, 3, -1, -1).contiguous(), labels.astype(np.int64)

    train_images, train_labels = images_and_labels("train")
    test_images, test_labels = images_and_labels("test")
    train_set, val_set = _split_train_val(train_images, train_labels)
    test_set = ImageSet(test_images, torch.as_tensor(test_labels))
    stats = dict(num_classes=10, mean=(FASHION_MNIST_MEAN,) * 3, std=(FASHION_MNIST_STD,) * 3)
    return Splits("fashionmnist", train_set, val_set, test_set, augment=Augment(32, 4, flip=True), **stats)


def load_imagenet_splits(data_dir, num_workers):
    """ImageNet-1k from an ImageFolder tree, streamed (image_folder.py); val and test are both the official val set."""
    from image_folder import IMAGENET_MEAN, IMAGENET_STD, load_imagenet, train_transform

    train, val, num_classes = load_imagenet(data_dir, num_workers)
    return Splits("imagenet", train, val, val, num_classes=num_classes, mean=IMAGENET_MEAN, std=IMAGENET_STD, augment=train_transform())


DATASETS = {
    "cifar10": lambda args: load_cifar("cifar10", args.data),
    "cifar100": lambda args: load_cifar("cifar100", args.data),
    "svhn": lambda args: load_svhn(args.data),
    "TinyImagenet": lambda args: load_tiny_imagenet(args.data_dir),
    "digits": lambda args: load_digits_splits(),
    "fashionmnist": lambda args: load_fashion_mnist(args.data),
    "imagenet": lambda args: load_imagenet_splits(args.data, args.num_workers),
}


# Classes and image side of each dataset, known before loading (for early option checks).
DATASET_SHAPES = {
    "cifar10": (10, 32), "cifar100": (100, 32), "svhn": (10, 32), "TinyImagenet": (200, 64), "digits": (10, 32), "fashionmnist": (10, 32),
    "imagenet": (1000, 224),
}  # fmt: skip
CAP_SEED = 1  # the subsets kept by --train_per_class / --test_per_class, whatever --seed is


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


def load_dataset(args):
    """The dataset named by `args.dataset`, with `--no-aug` and the size caps applied.

    --train_per_class N keeps N training images of each class (the validation split set
    aside first); --test_per_class M keeps M of each class in the validation and test splits.
    """
    splits = DATASETS[args.dataset](args)
    if getattr(args, "no_aug", False):
        splits.augment = None
    train_cap, test_cap = getattr(args, "train_per_class", None), getattr(args, "test_per_class", None)
    if train_cap is not None:
        splits.train = keep_per_class(splits.train, train_cap)
    if test_cap is not None:
        splits.val, splits.test = keep_per_class(splits.val, test_cap), keep_per_class(splits.test, test_cap)
    if getattr(args, "train_positions", None) is not None:
        splits.train = keep_positions(splits.train, args.train_positions)
    caps = f" (at most {train_cap} / {test_cap} per class)" if train_cap or test_cap else ""
    caps += f" (the {len(splits.train)} positions in {args.train_positions})" if getattr(args, "train_positions", None) else ""
    log.info("%s: %d train, %d val, %d test images%s", splits.name, len(splits.train), len(splits.val), len(splits.test), caps)
    return splits


# ---------------------------------------------------------------- forget sets


def parse_indexes(value, option="--indexes_to_replace"):
    """Explicit positions: a list, "3,17,42", or a path to a .txt / .npy file."""
    if value is None:
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        return np.asarray(value, dtype=np.int64)
    text = str(value).strip()
    if os.path.isfile(text):
        if text.endswith(".npy"):
            return np.asarray(np.load(text, allow_pickle=False), dtype=np.int64).ravel()
        with open(text) as f:
            text = f.read()
    elif text.endswith((".npy", ".txt")):
        raise UserError(f"{option}: file not found: {text}")
    try:
        return np.array([int(tok) for tok in text.replace(",", " ").split()], dtype=np.int64)
    except ValueError:
        raise UserError(f"{option}: expected comma-separated integers or a .txt/.npy file, got {value!r}") from None


def checked_positions(positions, n_train, option):
    """`positions` sorted, after checking that they are some, each once, within the training split."""
    if len(positions) == 0:
        raise UserError(f"{option} is empty")
    if positions.min() < 0 or positions.max() >= n_train:
        raise UserError(f"{option}: positions must be in [0, {n_train - 1}] (the training split has {n_train} images)")
    if len(np.unique(positions)) != len(positions):
        raise UserError(f"{option} lists a position more than once")
    return np.sort(positions)


@dataclass
class ForgetSet:
    positions: np.ndarray  # sorted positions in the training split
    whole_class: int | None  # the class forgotten entirely (class-wise forgetting), else None


def select_forget_set(train_labels, class_to_replace=0, num_indexes_to_replace=None, indexes_to_replace=None, seed=2):
    """The forget set's positions in the training split (docs/algorithms.md §3).

    Drawn as the original drew it (numpy RandomState(seed - 1)), so a seed gives the
    same positions on every machine.
    """
    labels = np.asarray(train_labels)
    n_train = len(labels)
    explicit = parse_indexes(indexes_to_replace)
    if explicit is not None:
        return ForgetSet(checked_positions(explicit, n_train, "--indexes_to_replace"), None)

    n = num_indexes_to_replace
    if class_to_replace is None:
        class_to_replace = 0
    if class_to_replace == -1:
        if n is None:
            raise UserError("--class_to_replace -1 (random forgetting) needs --num_indexes_to_replace")
        candidates = np.arange(n_train)
    else:
        num_classes = int(labels.max()) + 1
        if not 0 <= class_to_replace < num_classes:
            raise UserError(f"--class_to_replace {class_to_replace}: classes are 0..{num_classes - 1}, or -1 for random forgetting")
        candidates = np.flatnonzero(labels == class_to_replace)
    if n is not None and not 0 < n <= len(candidates):
        where = "the training split" if class_to_replace == -1 else f"class {class_to_replace}"
        raise UserError(f"--num_indexes_to_replace {n}: {where} has {len(candidates)} training images; ask for 1..{len(candidates)}")
    whole_class = class_to_replace if class_to_replace >= 0 and (n is None or n == len(candidates)) else None
    if n is None:
        return ForgetSet(candidates.astype(np.int64), whole_class)
    rng = np.random.RandomState(seed - 1)
    return ForgetSet(np.sort(rng.choice(candidates, size=n, replace=False)).astype(np.int64), whole_class)


def unlearning_positions(splits, forget):
    """Index arrays for retain / forget (into train) and val / test.

    Forget and retain partition the training split; under class-wise forgetting the
    forgotten class is removed from val and test.
    """
    retain = np.setdiff1d(np.arange(len(splits.train)), forget.positions)
    val = np.arange(len(splits.val))
    test = np.arange(len(splits.test))
    if forget.whole_class is not None:
        val = np.flatnonzero(splits.val.labels.cpu().numpy() != forget.whole_class)
        test = np.flatnonzero(splits.test.labels.cpu().numpy() != forget.whole_class)
    return {"retain": retain, "forget": forget.positions, "val": val, "test": test}


# ---------------------------------------------------------------- backdoor trigger


def trigger_value(dataset):
    """Pixel value of the trigger: black, as in the original; white on digits and Fashion-MNIST (black backgrounds)."""
    return 255 if dataset in ("digits", "fashionmnist") else 0


def add_trigger(images, size, value):
    """A copy of `images` (uint8, N x C x H x W) with a size x size square set to `value`,
    2 pixels in from the bottom-right corner."""
    out = images.clone()
    out[:, :, -2 - size : -2, -2 - size : -2] = value
    return out
