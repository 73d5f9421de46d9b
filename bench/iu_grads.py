"""IU's per-sample gradients: batched (torch.func) vs one backward per sample, and the floor.

    python bench/iu_grads.py [--arch resnet20s] [--samples 256] [--chunk 64]

Each time is the best of three runs. The floor is one ordinary batched backward over the same samples (it yields only the
summed gradient, so no per-sample method can beat it). All three run in this process,
on the same model and images.
"""

import argparse
import os
import sys
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataset import load_dataset  # noqa: E402
from models import create_model  # noqa: E402
from unlearn.wfisher import per_sample_gradients  # noqa: E402
from utils import device_synchronize, get_device, setup_seed  # noqa: E402


def timed(fn, device, repeats=3):
    """Best of `repeats` wall-clock runs (the least disturbed by other load) and the output."""
    best = float("inf")
    for _ in range(repeats):
        device_synchronize(device)
        start = time.perf_counter()
        out = fn()
        device_synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best, out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet20s")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=None)
    parser.add_argument("--gpu", type=int, default=0)
    args = parser.parse_args()

    device = get_device(args.gpu)
    splits = load_dataset(SimpleNamespace(dataset="digits", no_aug=False))
    setup_seed(1)
    model = create_model(args.arch, splits.num_classes, splits.mean, splits.std).to(device).eval()
    images = (splits.train.images[: args.samples].float() / 255).to(device)
    labels = splits.train.labels[: args.samples].to(device)
    params = list(model.parameters())

    def loop():
        rows = []
        for x, y in zip(images, labels):
            grads = torch.autograd.grad(F.cross_entropy(model(x[None]), y[None]), params)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
        return torch.stack(rows)

    def floor():
        return torch.autograd.grad(F.cross_entropy(model(images), labels, reduction="sum"), params)

    per_sample_gradients(model, images[:8], labels[:8], args.chunk)  # warm-up
    t_loop, ref = timed(loop, device)
    t_batched, got = timed(lambda: per_sample_gradients(model, images, labels, args.chunk), device)
    t_floor, _ = timed(floor, device)
    error = float((got - ref).norm() / ref.norm())
    print(f"device {device}, {args.arch}, {args.samples} samples, relative difference {error:.1e}")
    speedup, above_floor = t_loop / t_batched, t_batched / t_floor
    print(f"iu_per_sample_grads: {t_loop:.2f} -> {t_batched:.2f} ({speedup:.2f}x); floor {t_floor:.2f} ({above_floor:.2f}x above)")


if __name__ == "__main__":
    main()
