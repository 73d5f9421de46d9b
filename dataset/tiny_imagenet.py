"""Tiny-ImageNet, read from its own folder (--data_dir), never modified."""

import os

import numpy as np
import torch

from errors import UserError
from options import Option

from .record import Dataset
from .splits import Splits, hwc_to_chw
from .tensors import Augment, ImageSet


def _read_image_files(paths, what):
    from PIL import Image
    from tqdm import tqdm

    images = []
    for path in tqdm(paths, desc=f"reading {what}", leave=False):
        with Image.open(path) as img:
            images.append(np.asarray(img.convert("RGB")))
    return hwc_to_chw(np.stack(images))


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


DATA_DIR = Option("data_dir", "./tiny-imagenet-200", "Tiny-ImageNet folder (read, never modified)", type=str)

TINY_IMAGENET = Dataset(
    "TinyImagenet",
    load=lambda args: load_tiny_imagenet(args.data_dir),
    help="Tiny-ImageNet: 100,000 training and 10,000 validation 64x64 images of 200 classes (--data_dir); test = val",
    classes=200,
    side=64,
    options=(DATA_DIR,),
)
