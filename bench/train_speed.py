"""Seconds per training epoch on the digits data, and the training loop's images/s.

    python bench/train_speed.py [--archs resnet20s resnet18] [--epochs 2] [--batch_size 256]

One warm-up epoch, then the mean over --epochs timed epochs (the loop times itself,
synchronising the device). `measure_epoch` also times the same epoch fed by
torchvision's DataLoader with PIL transforms (the original's pipeline), for bench/run.py.
"""

import argparse
from types import SimpleNamespace

import torch
from pipeline import PILImages  # noqa: E402

from dataset import TensorLoader, load_dataset  # noqa: E402
from models import create_model  # noqa: E402
from trainer import make_optimizer, train_epoch  # noqa: E402
from utils import get_device, setup_seed  # noqa: E402


def seconds_per_epoch(arch, splits, loader, device, epochs):
    setup_seed(1)
    model = create_model(arch, splits.num_classes, splits.mean, splits.std).to(device)
    optimizer = make_optimizer(model, 0.1, 0.9, 5e-4)
    train_epoch(model, loader, optimizer, device, desc=f"{arch} warm-up")
    runs = [train_epoch(model, loader, optimizer, device, epoch=e, desc=arch) for e in range(epochs)]
    return sum(r["seconds"] for r in runs) / len(runs)


def torchvision_loader(splits, batch_size):
    from torchvision import transforms

    hwc = splits.train.images.permute(0, 2, 3, 1).contiguous().numpy()
    transform = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.ToTensor()])  # digits: no flip
    return torch.utils.data.DataLoader(PILImages(hwc, splits.train.labels.numpy(), transform), batch_size=batch_size, shuffle=True)


def measure_epoch(device, arch="resnet20s", batch_size=256, epochs=1):
    """(seconds per epoch with torchvision's pipeline, with the tensor pipeline) on digits."""
    splits = load_dataset(SimpleNamespace(dataset="digits", no_aug=False))
    ours = TensorLoader(splits.train.to(device), batch_size=batch_size, shuffle=True, augment=splits.augment, seed=1)
    theirs = DeviceLoader(torchvision_loader(splits, batch_size), device)
    return seconds_per_epoch(arch, splits, theirs, device, epochs), seconds_per_epoch(arch, splits, ours, device, epochs)


class DeviceLoader:
    """Moves each batch of a CPU loader to the device (what the original's loop did)."""

    def __init__(self, loader, device):
        self.loader, self.device = loader, device

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["resnet20s", "resnet18"])
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--gpu", type=int, default=0)
    args = parser.parse_args()

    device = get_device(args.gpu)
    splits = load_dataset(SimpleNamespace(dataset="digits", no_aug=False))
    train = splits.train.to(device)
    threads = torch.get_num_threads()
    print(f"device {device}, torch {torch.__version__}, {threads} threads, {len(train)} digits images, batch {args.batch_size}")
    for arch in args.archs:
        loader = TensorLoader(train, batch_size=args.batch_size, shuffle=True, augment=splits.augment, seed=1)
        seconds = seconds_per_epoch(arch, splits, loader, device, args.epochs)
        print(f"{arch}: {seconds:.2f} s/epoch, {len(train) / seconds:.0f} images/s")


if __name__ == "__main__":
    main()
