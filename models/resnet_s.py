"""The small CIFAR ResNets of He et al. (2016), section 4.2: resnet20s/44s/56s.

Three stages of 16, 32, 64 channels; the shortcut that changes shape is "option A":
a parameter-free identity that subsamples by 2 and zero-pads the new channels.
Layer names and the Kaiming-normal initialisation are the original code's.
"""

import torch.nn.functional as F
from torch import nn

from .normalize import CIFAR10_MEAN, CIFAR10_STD, NormalizeByChannelMeanStd


class PadShortcut(nn.Module):
    """Option-A shortcut: stride-2 subsampling, zero channels on both sides."""

    def __init__(self, pad_channels):
        super().__init__()
        self.pad_channels = pad_channels

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad_channels, self.pad_channels))


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut = PadShortcut(planes // 4)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetS(nn.Module):
    def __init__(self, num_blocks, num_classes=10, mean=CIFAR10_MEAN, std=CIFAR10_STD):
        super().__init__()
        self.normalize = NormalizeByChannelMeanStd(mean, std)
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        for stage, (planes, stride) in enumerate([(16, 1), (32, 2), (64, 2)], start=1):
            blocks = []
            for block_stride in [stride] + [1] * (num_blocks - 1):
                blocks.append(BasicBlock(in_planes, planes, block_stride))
                in_planes = planes
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def resnet20s(num_classes=10, **kwargs):
    return ResNetS(3, num_classes, **kwargs)


def resnet44s(num_classes=10, **kwargs):
    return ResNetS(7, num_classes, **kwargs)


def resnet56s(num_classes=10, **kwargs):
    return ResNetS(9, num_classes, **kwargs)
