"""CIFAR-10 and CIFAR-100 (torchvision's files under --data; downloaded when absent)."""

import os

import torch

from .record import Dataset
from .splits import Splits, hwc_to_chw, split_train_val
from .tensors import Augment, ImageSet
from .torchvision_files import open_torchvision_dataset

STATS = {
    "cifar10": dict(num_classes=10, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    "cifar100": dict(num_classes=100, mean=(0.5071, 0.4866, 0.4409), std=(0.2673, 0.2564, 0.2762)),
}


def load_cifar(name, data_dir):
    from torchvision.datasets import CIFAR10, CIFAR100

    cls, sub = (CIFAR10, "cifar-10-batches-py") if name == "cifar10" else (CIFAR100, "cifar-100-python")
    layout = os.path.join(data_dir, sub) + "/"
    train = open_torchvision_dataset(cls, name, data_dir, layout, train=True)
    test = open_torchvision_dataset(cls, name, data_dir, layout, train=False)
    train_set, val_set = split_train_val(hwc_to_chw(train.data), train.targets)
    test_set = ImageSet(hwc_to_chw(test.data), torch.as_tensor(test.targets, dtype=torch.long))
    return Splits(name, train_set, val_set, test_set, augment=Augment(32, 4, flip=True), **STATS[name])


CIFAR10 = Dataset(
    "cifar10",
    load=lambda args: load_cifar("cifar10", args.data),
    help="CIFAR-10: 50,000 training and 10,000 test 32x32 photographs of 10 classes (--data, downloaded when absent)",
    classes=10,
    side=32,
)
CIFAR100 = Dataset(
    "cifar100",
    load=lambda args: load_cifar("cifar100", args.data),
    help="CIFAR-100: as CIFAR-10, 100 classes (--data, downloaded when absent)",
    classes=100,
    side=32,
)
