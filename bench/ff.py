"""FF's Fisher diagonal: the class loop vs what runs by default on the device, and the floor.

    python bench/ff.py [--arch resnet20s] [--batches 8] [--gpu 0]

`ours` is `fisher_diagonal`'s automatic choice: the loop on CPU, where the extra
forward work of "grouped" and vmap's overhead in "batched" do not pay; on CUDA
"measured", which times one batch of each method and keeps the fastest (its first run
here pays for that trial, the best of three does not, as in a real run over a retain set
of hundreds of batches). Every method's time is printed too, with the number of aten
operators one batch runs (innermost calls: on a GPU each one that computes is a kernel
launch, and launches are the cost at batch 32). The floor is one ordinary backward per
batch (the cost of a single class).
"""

import argparse
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from common import best_time, line  # noqa: E402
from torch.profiler import profile

from dataset import TensorLoader, load_dataset  # noqa: E402
from models import create_model  # noqa: E402
from unlearn.fisher import FISHER_BATCH_SIZE  # noqa: E402
from unlearn.gradients import FISHER_METHODS, MEASURED_CHOICES, fisher_diagonal  # noqa: E402
from utils import get_device, setup_seed  # noqa: E402


def aten_ops_per_batch(model, images, method):
    """Innermost aten operators one batch of `fisher_diagonal` runs (steady state: 3 batches minus 1, halved)."""

    def count(batches):
        with profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            fisher_diagonal(model, [(images, None)] * batches, 10, method=method)
        return sum(1 for e in prof.events() if e.name.startswith("aten::") and not any(c.name.startswith("aten::") for c in e.cpu_children))

    return (count(3) - count(1)) // 2


def measure(device, arch="resnet20s", batches=8):
    """{method: seconds} over `batches` batches of 32 digits images, with "default" and "floor";
    "picked" names the method the default ran."""
    splits = load_dataset(SimpleNamespace(dataset="digits", no_aug=False))
    setup_seed(1)
    model = create_model(arch, splits.num_classes, splits.mean, splits.std).to(device).eval()
    loader = TensorLoader(splits.train.to(device), range(batches * FISHER_BATCH_SIZE), batch_size=FISHER_BATCH_SIZE)
    params = list(model.parameters())

    def floor():
        for images, labels in loader:
            torch.autograd.grad(F.cross_entropy(model(images), labels), params)

    seconds = {method: best_time(lambda m=method: fisher_diagonal(model, loader, 10, method=m), device)[0] for method in FISHER_METHODS}
    MEASURED_CHOICES.clear()  # the default's trial happens here, timed with it
    seconds["default"] = best_time(lambda: fisher_diagonal(model, loader, 10), device)[0]
    seconds["picked"] = next(iter(MEASURED_CHOICES.values()), "loop")
    seconds["floor"] = best_time(floor, device)[0]
    return seconds


def method_report(seconds, ops=None):
    """`loop 1.23 s, batched 0.98 s (1.26x), ...` with the aten operator counts when given."""
    parts = []
    for method in FISHER_METHODS:
        text = f"{method} {seconds[method]:.3f} s ({seconds['loop'] / seconds[method]:.2f}x)"
        parts.append(text + (f", {ops[method]} ops/batch" if ops else ""))
    return "; ".join(parts) + (f"; default runs {seconds['picked']}" if "picked" in seconds else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet20s")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--gpu", type=int, default=0)
    args = parser.parse_args()
    device = get_device(args.gpu)
    seconds = measure(device, args.arch, args.batches)
    model = create_model(args.arch, 10).to(device).eval()
    images = torch.rand(FISHER_BATCH_SIZE, 3, 32, 32, device=device)
    ops = {method: aten_ops_per_batch(model, images, method) for method in FISHER_METHODS}
    print(f"device {device}, {args.arch}: {method_report(seconds, ops)}")
    print(line(f"ff_fisher ({args.arch})", seconds["loop"], seconds["default"], seconds["floor"]))


if __name__ == "__main__":
    main()
