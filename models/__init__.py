"""Model registry: `model_dict[name](num_classes=..., mean=..., std=...)`.

`resnet18` and `resnet50` also take `imagenet=True` for the 7x7 stem with max-pool.
"""

from .normalize import NormalizeByChannelMeanStd
from .resnet import resnet18, resnet50
from .resnet_s import resnet20s, resnet44s, resnet56s
from .vgg import vgg16_bn

model_dict = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "resnet20s": resnet20s,
    "resnet44s": resnet44s,
    "resnet56s": resnet56s,
    "vgg16_bn": vgg16_bn,
}

# Architectures with a choice of stem (`--imagenet_arch`).
IMAGENET_STEM_ARCHS = ("resnet18", "resnet50")

__all__ = ["model_dict", "create_model", "IMAGENET_STEM_ARCHS", "NormalizeByChannelMeanStd", *model_dict]


def create_model(arch, num_classes=10, mean=None, std=None, imagenet=False):
    """Build `arch` for `num_classes`, normalising inputs with the given channel statistics."""
    kwargs = {"num_classes": num_classes}
    if mean is not None:
        kwargs.update(mean=mean, std=std)
    if imagenet:
        kwargs["imagenet"] = True
    return model_dict[arch](**kwargs)
