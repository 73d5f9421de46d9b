"""ImageNet-1k from its class folders (--data: train/<wnid>/*.JPEG, val/<wnid>/*.JPEG), streamed
from disk (dataset/folders.py); val and test are both the official val set, as in the original's
ImageNet path. docs/imagenet.md says how to lay it out and run it."""

from .folders import NUM_WORKERS, load_class_folders, train_transform
from .record import Dataset
from .splits import Splits

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# As many shadow samples as the original's ImageNet path took (10,000 retain and 10,000
# validation images), so that the attack's SVM fits in minutes, not hours. They are drawn at
# random (a fixed seed), not taken from the front: ImageFolder lists the images class by
# class, so the first 10,000 retain images would be 8 classes and the first 10,000
# validation images 200, and the attack would separate classes, not members.
IMAGENET_MIA_SAMPLES = 10_000


def load_imagenet_splits(data_dir, num_workers):
    train, val, num_classes = load_class_folders(data_dir, num_workers)
    return Splits("imagenet", train, val, val, num_classes=num_classes, mean=IMAGENET_MEAN, std=IMAGENET_STD, augment=train_transform())


IMAGENET = Dataset(
    "imagenet",
    load=lambda args: load_imagenet_splits(args.data, args.num_workers),
    help="ImageNet-1k from its class folders under --data (train/<wnid>/, val/<wnid>/), streamed from disk, 224x224 crops; test = val",
    classes=1000,
    side=224,
    streamed=True,
    mia_samples=IMAGENET_MIA_SAMPLES,
    options=(NUM_WORKERS,),
)
