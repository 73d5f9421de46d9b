"""IU's per-sample gradients: batched (torch.func) vs one backward per sample, and the floor.

    python bench/iu_grads.py [--arch resnet20s] [--samples 256] [--chunk 64]

Each time is the best of three runs. The floor is one ordinary batched backward over
the same samples (it yields only the summed gradient, so no per-sample method can beat
it). All three run in this process, on the same model and images.
"""

import argparse
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from common import best_time, line  # noqa: E402

from dataset import load_dataset  # noqa: E402
from models import create_model  # noqa: E402
from unlearn.gradients import per_sample_gradients  # noqa: E402
from utils import get_device, setup_seed  # noqa: E402


def measure(device, arch="resnet20s", samples=256, chunk=None):
    """(loop seconds, batched seconds, floor seconds, relative difference) for IU's gradients."""
    splits = load_dataset(SimpleNamespace(dataset="digits", no_aug=False))
    setup_seed(1)
    model = create_model(arch, splits.num_classes, splits.mean, splits.std).to(device).eval()
    images = (splits.train.images[:samples].float() / 255).to(device)
    labels = splits.train.labels[:samples].to(device)
    params = list(model.parameters())

    def loop():
        rows = []
        for x, y in zip(images, labels):
            grads = torch.autograd.grad(F.cross_entropy(model(x[None]), y[None]), params)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
        return torch.stack(rows)

    def floor():
        return torch.autograd.grad(F.cross_entropy(model(images), labels, reduction="sum"), params)

    per_sample_gradients(model, images[:8], labels[:8], chunk)  # warm-up
    t_loop, ref = best_time(loop, device)
    t_batched, got = best_time(lambda: per_sample_gradients(model, images, labels, chunk), device)
    t_floor, _ = best_time(floor, device)
    return t_loop, t_batched, t_floor, float((got - ref).norm() / ref.norm())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet20s")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=None)
    parser.add_argument("--gpu", type=int, default=0)
    args = parser.parse_args()

    device = get_device(args.gpu)
    t_loop, t_batched, t_floor, error = measure(device, args.arch, args.samples, args.chunk)
    print(f"device {device}, {args.arch}, {args.samples} samples, relative difference {error:.1e}")
    print(line("iu_per_sample_grads", t_loop, t_batched, t_floor))


if __name__ == "__main__":
    main()
