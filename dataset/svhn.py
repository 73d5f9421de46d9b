"""SVHN, the Street View House Numbers (torchvision's files under --data; downloaded when absent)."""

import os

import torch

from .record import Dataset
from .splits import Splits, split_train_val
from .tensors import ImageSet
from .torchvision_files import open_torchvision_dataset


def load_svhn(data_dir):
    from torchvision.datasets import SVHN

    layout = f"{os.path.join(data_dir, 'train_32x32.mat')} and test_32x32.mat"
    train = open_torchvision_dataset(SVHN, "svhn", data_dir, layout, split="train")
    test = open_torchvision_dataset(SVHN, "svhn", data_dir, layout, split="test")
    train_set, val_set = split_train_val(torch.from_numpy(train.data), train.labels)
    test_set = ImageSet(torch.from_numpy(test.data), torch.as_tensor(test.labels, dtype=torch.long))
    return Splits(
        "svhn", train_set, val_set, test_set, num_classes=10, mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970), augment=None
    )


SVHN = Dataset(
    "svhn",
    load=lambda args: load_svhn(args.data),
    help="SVHN: 73,257 training and 26,032 test 32x32 house-number digits (--data, downloaded when absent); no augmentation",
    classes=10,
    side=32,
)
