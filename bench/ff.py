"""FF's Fisher diagonal: the class loop vs what runs by default on the device, and the floor.

    python bench/ff.py [--batches 8] [--gpu 0]

`ours` is `fisher_diagonal`'s automatic choice (the batched backward on CUDA, the loop on
CPU, where batching measured slower); the batched time is printed too. The floor is one
ordinary backward per batch (the cost of a single class).
"""

import argparse
import os
import sys
from types import SimpleNamespace

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import best_time, line  # noqa: E402

from dataset import TensorLoader, load_dataset  # noqa: E402
from models import create_model  # noqa: E402
from unlearn.fisher import FISHER_BATCH_SIZE, fisher_diagonal  # noqa: E402
from utils import get_device, setup_seed  # noqa: E402


def measure(device, arch="resnet20s", batches=8):
    """(loop s, default s, batched s, floor s) over `batches` batches of 32 digits images."""
    splits = load_dataset(SimpleNamespace(dataset="digits", no_aug=False))
    setup_seed(1)
    model = create_model(arch, splits.num_classes, splits.mean, splits.std).to(device).eval()
    loader = TensorLoader(splits.train.to(device), range(batches * FISHER_BATCH_SIZE), batch_size=FISHER_BATCH_SIZE)
    params = list(model.parameters())

    def floor():
        for images, labels in loader:
            torch.autograd.grad(F.cross_entropy(model(images), labels), params)

    t_loop, _ = best_time(lambda: fisher_diagonal(model, loader, 10, batched=False), device)
    t_batched, _ = best_time(lambda: fisher_diagonal(model, loader, 10, batched=True), device)
    t_default, _ = best_time(lambda: fisher_diagonal(model, loader, 10), device)
    t_floor, _ = best_time(floor, device)
    return t_loop, t_default, t_batched, t_floor


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--gpu", type=int, default=0)
    args = parser.parse_args()
    device = get_device(args.gpu)
    t_loop, t_default, t_batched, t_floor = measure(device, batches=args.batches)
    print(f"device {device}: batched backward {t_batched:.3f} s ({t_loop / t_batched:.2f}x the loop)")
    print(line("ff_fisher", t_loop, t_default, t_floor))


if __name__ == "__main__":
    main()
