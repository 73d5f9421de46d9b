"""Datasets as uint8 tensors, the fixed train/val split and forget sets.

Every split is held once as an `ImageSet` (images uint8 N x C x H x W, labels int64);
retain, forget, val and test are index arrays into those tensors, batched by a
`TensorLoader` (`loaders.py`; ImageNet streams from its folders, `image_folder.py`).
`make_loader` gives the loader that fits the data.

Splits (docs/algorithms.md §2): the val set is 10% of every class of the training data,
drawn with seed 1 whatever `--seed` is, so every script sees the same training split.
"""

import logging
import os
import socket
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from errors import UserError
from image_folder import CROP, IMAGENET_MEAN, IMAGENET_STD, StreamLoader, load_imagenet, train_transform
from loaders import Augment, ImageSet, TensorLoader, in_order, num_samples, with_batch_size  # noqa: F401 (the data API)

log = logging.getLogger("unlearn_sparse")

SPLIT_SEED = 1  # the seed the original drew its train/val split with
VAL_FRACTION = 0.1
DIGITS_TEST_SIZE = 360  # 20% of scikit-learn's 1,797 digits, stratified, fixed
DOWNLOAD_TIMEOUT_S = 30


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
        return (3, CROP, CROP)


# ---------------------------------------------------------------- loaders


def make_loader(data, indices=None, batch_size=256, shuffle=False, augment=None, seed=0):
    """A TensorLoader over an ImageSet, a StreamLoader over a FolderSet (ImageNet, read from disk)."""
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
