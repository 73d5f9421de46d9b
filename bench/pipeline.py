"""Data pipeline: the tensor loader vs torchvision's DataLoader with PIL transforms.

    python bench/pipeline.py [--images 10000] [--gpu 0]

Both walk one shuffled epoch of CIFAR-shaped uint8 images (random pixels) with the
training augmentation (random 32-crop with 4-pixel zero padding, horizontal flip) in
batches of 256, and hand out float tensors on the device. The baseline is what the
original code ran: a single-process DataLoader (num_workers=0) over PIL images.
"""

import argparse

import numpy as np
import torch
from common import best_time, line  # noqa: E402

from dataset import Augment, ImageSet, TensorLoader  # noqa: E402
from utils import get_device  # noqa: E402


class PILImages(torch.utils.data.Dataset):
    """HWC uint8 images served as PIL images through a torchvision transform (as CIFAR10 does)."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def measure(device, n_images=10000, batch_size=256):
    """(torchvision seconds, tensor-loader seconds) for one epoch of n_images."""
    from torchvision import transforms

    rng = np.random.RandomState(0)
    hwc = rng.randint(0, 256, (n_images, 32, 32, 3), dtype=np.uint8)
    labels = rng.randint(0, 10, n_images)
    transform = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor()])
    baseline = torch.utils.data.DataLoader(PILImages(hwc, labels, transform), batch_size=batch_size, shuffle=True, num_workers=0)
    data = ImageSet(torch.from_numpy(hwc.transpose(0, 3, 1, 2).copy()), torch.from_numpy(labels)).to(device)
    ours = TensorLoader(data, batch_size=batch_size, shuffle=True, augment=Augment(32, 4, flip=True), seed=0)

    def epoch(loader, move):
        last = None
        for x, y in loader:
            last = (x.to(device), y.to(device)) if move else (x, y)
        return last

    t_base, _ = best_time(lambda: epoch(baseline, True), device, repeats=1)
    t_ours, _ = best_time(lambda: epoch(ours, False), device)
    return t_base, t_ours


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--gpu", type=int, default=0)
    args = parser.parse_args()
    device = get_device(args.gpu)
    t_base, t_ours = measure(device, args.images)
    print(f"device {device}: {args.images / t_base:.0f} -> {args.images / t_ours:.0f} images/s")
    print(line("data_pipeline", t_base, t_ours))


if __name__ == "__main__":
    main()
