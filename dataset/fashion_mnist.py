"""Fashion-MNIST (Zalando): from --data in torchvision's layout, Debian's dataset-fashion-mnist, or a download."""

import os

import numpy as np
import torch
import torch.nn.functional as F

from errors import UserError

from .record import Dataset
from .splits import Splits, split_train_val
from .tensors import Augment, ImageSet
from .torchvision_files import open_torchvision_dataset

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
            open_torchvision_dataset(FashionMNIST, "fashionmnist", data_dir, layout, train=True)
            open_torchvision_dataset(FashionMNIST, "fashionmnist", data_dir, layout, train=False)
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
    train_set, val_set = split_train_val(train_images, train_labels)
    test_set = ImageSet(test_images, torch.as_tensor(test_labels))
    stats = dict(num_classes=10, mean=(FASHION_MNIST_MEAN,) * 3, std=(FASHION_MNIST_STD,) * 3)
    return Splits("fashionmnist", train_set, val_set, test_set, augment=Augment(32, 4, flip=True), **stats)


FASHION_MNIST = Dataset(
    "fashionmnist",
    load=lambda args: load_fashion_mnist(args.data),
    help="Fashion-MNIST: 60,000 training and 10,000 test 28x28 greyscale photographs of clothing, 10 classes, padded to 32x32 "
    f"(--data, else Debian's dataset-fashion-mnist in {FASHION_MNIST_SYSTEM_DIR}, else downloaded)",
    classes=10,
    side=32,
    trigger_value=255,  # white on a black background
)
