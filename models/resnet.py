"""ResNet-18 / ResNet-50 with a CIFAR stem, built from torchvision's blocks.

Module names equal torchvision's (and so the original code's): `conv1`, `bn1`,
`layer1.0.conv1`, ..., `layer2.0.downsample.0`, `fc`, plus `normalize`.

torchvision is imported when one of these is first built, not with the package:
importing it takes longer than importing torch (it loads torch._dynamo), and every
script start, resnet20s runs and argument errors included, would pay for it.
"""

import functools

from torch import nn

from .normalize import CIFAR10_MEAN, CIFAR10_STD, NormalizeByChannelMeanStd


@functools.cache
def resnet_class():
    """torchvision's ResNet with the normalisation layer in front, and its module."""
    from torchvision.models import resnet as tv_resnet

    class ResNet(tv_resnet.ResNet):
        """`imagenet=False` (the default, used for 32x32 and 64x64 inputs) swaps the 7x7
        stride-2 stem and max-pool for a 3x3 stride-1 conv and no pooling."""

        def __init__(self, block, layers, num_classes=10, imagenet=False, mean=CIFAR10_MEAN, std=CIFAR10_STD):
            super().__init__(block, layers, num_classes=num_classes)
            if not imagenet:
                self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
                nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
                self.maxpool = nn.Identity()
            self.normalize = NormalizeByChannelMeanStd(mean, std)

        def forward(self, x):
            return self._forward_impl(self.normalize(x))

    return ResNet, tv_resnet


def resnet18(num_classes=10, imagenet=False, **kwargs):
    ResNet, tv_resnet = resnet_class()
    return ResNet(tv_resnet.BasicBlock, [2, 2, 2, 2], num_classes, imagenet, **kwargs)


def resnet50(num_classes=10, imagenet=False, **kwargs):
    ResNet, tv_resnet = resnet_class()
    return ResNet(tv_resnet.Bottleneck, [3, 4, 6, 3], num_classes, imagenet, **kwargs)
