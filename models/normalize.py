"""Per-channel normalisation as the first layer of every model.

Keeping it inside the model (a buffer, saved in the state dict) means loaders hand
the network raw [0, 1] images, and a checkpoint carries the statistics it was
trained with. The module and buffer names (`normalize.mean`, `normalize.std`) are
the original code's, so its checkpoints load unchanged.
"""

import torch
from torch import nn

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class NormalizeByChannelMeanStd(nn.Module):
    def __init__(self, mean=CIFAR10_MEAN, std=CIFAR10_STD):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).clone())
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).clone())

    def forward(self, x):
        return (x - self.mean[None, :, None, None]) / self.std[None, :, None, None]

    def extra_repr(self):
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"
