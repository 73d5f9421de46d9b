"""scikit-learn's bundled handwritten digits: no download, the data of the tests and the demo's fallback."""

import numpy as np
import torch
import torch.nn.functional as F

from .record import Dataset
from .splits import Splits, split_train_val
from .tensors import Augment, ImageSet

DIGITS_TEST_SIZE = 360  # 20% of scikit-learn's 1,797 digits, stratified, fixed


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
    train_set, val_set = split_train_val(images[pool], labels[pool])
    test_set = ImageSet(images[test], torch.as_tensor(labels[test]))
    pixels = train_set.images.float() / 255
    mean = tuple(pixels.mean(dim=(0, 2, 3)).tolist())
    std = tuple(pixels.std(dim=(0, 2, 3)).tolist())
    # A mirrored digit is another glyph: crop only.
    return Splits("digits", train_set, val_set, test_set, num_classes=10, mean=mean, std=std, augment=Augment(32, 4, flip=False))


DIGITS = Dataset(
    "digits",
    load=lambda args: load_digits_splits(),
    help="scikit-learn's 1,797 handwritten digits, 8x8 scaled to 32x32, bundled (no download): 1,298 training, 139 validation, "
    "360 test images",
    classes=10,
    side=32,
    trigger_value=255,  # white on a black background
)
