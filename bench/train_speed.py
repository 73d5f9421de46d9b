"""Seconds per training epoch and images/s of the training loop on the digits data.

    python bench/train_speed.py [--archs resnet20s resnet18] [--epochs 2] [--batch_size 256]

One warm-up epoch, then the mean over --epochs timed epochs (the loop times itself,
synchronising the device). The numbers go into the README's Performance section.
"""

import argparse
import os
import sys
from types import SimpleNamespace

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataset import TensorLoader, load_dataset  # noqa: E402
from models import create_model  # noqa: E402
from trainer import make_optimizer, train_epoch  # noqa: E402
from utils import get_device, setup_seed  # noqa: E402


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
        setup_seed(1)
        model = create_model(arch, splits.num_classes, splits.mean, splits.std).to(device)
        loader = TensorLoader(train, batch_size=args.batch_size, shuffle=True, augment=splits.augment, seed=1)
        optimizer = make_optimizer(model, 0.1, 0.9, 5e-4)
        train_epoch(model, loader, optimizer, device, desc=f"{arch} warm-up")
        runs = [train_epoch(model, loader, optimizer, device, epoch=e, desc=arch) for e in range(args.epochs)]
        seconds = sum(r["seconds"] for r in runs) / len(runs)
        print(f"{arch}: {seconds:.2f} s/epoch, {len(train) / seconds:.0f} images/s")


if __name__ == "__main__":
    main()
