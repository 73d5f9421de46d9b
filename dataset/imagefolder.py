"""Any tree of class folders, streamed from disk as ImageNet is: a user's own data set without code.

    <data>/train/<class>/<image>   the training images
    <data>/val/<class>/<image>     the validation images, which are also the test images (as on ImageNet)

Every class folder of val/ must be one of train/'s; classes are numbered in the sorted order of
train/'s folder names (torchvision's ImageFolder). Images of any size and format PIL reads are
decoded in --num_workers processes and cropped to --image_size (RandomResizedCrop and a flip for
training, Resize and CenterCrop for evaluation, as pytorch/examples' imagenet/main.py) and
normalised by --image_mean and --image_std (the model's first layer). The folders are read, never
written.
"""

from options import Option

from .folders import NUM_WORKERS, Tree, load_class_folders, train_transform
from .imagenet import IMAGENET_MEAN, IMAGENET_MIA_SAMPLES, IMAGENET_STD
from .record import Dataset
from .splits import Splits

TREE = Tree(name="imagefolder", files="<class>/*", sorting="each validation image in the folder of its class")


def channel_values(text):
    """'0.5,0.4,0.3' (or one value for all three channels) as a 3-tuple of floats; ValueError otherwise."""
    values = tuple(float(v) for v in str(text).split(","))
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise ValueError(text)
    return values


def check_channels(option, positive):
    def check(text):
        try:
            values = channel_values(text)
        except ValueError:
            return f"--{option} {text!r}: give three comma-separated numbers (red, green, blue), or one for all three"
        if positive and min(values) <= 0:
            return f"--{option} {text!r}: a standard deviation must be positive"
        return None

    return check


IMAGE_SIZE = Option(
    "image_size", 224, "side of the square crops the model sees, pixels", type=int,
    check=lambda n: None if n >= 8 else f"--image_size {n}: must be at least 8 pixels",
)  # fmt: skip
IMAGE_MEAN = Option(
    "image_mean", ",".join(map(str, IMAGENET_MEAN)), "per-channel mean of the images in [0, 1] (default: ImageNet's)", type=str,
    check=check_channels("image_mean", positive=False),
)  # fmt: skip
IMAGE_STD = Option(
    "image_std", ",".join(map(str, IMAGENET_STD)), "per-channel standard deviation of the images in [0, 1] (default: ImageNet's)",
    type=str, check=check_channels("image_std", positive=True),
)  # fmt: skip


def load_image_folder(args):
    crop = args.image_size
    train, val, num_classes = load_class_folders(args.data, args.num_workers, TREE, crop)
    mean, std = channel_values(args.image_mean), channel_values(args.image_std)
    return Splits("imagefolder", train, val, val, num_classes=num_classes, mean=mean, std=std, augment=train_transform(crop))


IMAGEFOLDER = Dataset(
    "imagefolder",
    load=load_image_folder,
    help="any tree of class folders under --data (train/<class>/, val/<class>/), streamed from disk as ImageNet, "
    "--image_size crops normalised by --image_mean and --image_std; test = val",
    classes=None,
    side=None,
    side_option="image_size",
    streamed=True,
    mia_samples=IMAGENET_MIA_SAMPLES,
    options=(NUM_WORKERS, IMAGE_SIZE, IMAGE_MEAN, IMAGE_STD),
)
