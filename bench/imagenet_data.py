"""The ImageNet data path (dataset/folders.py) and the cost of running under torchrun, on the CPU.

    python bench/imagenet_data.py [--images_per_class 40] [--classes 10] [--side 400] [--batch_size 64]

1. Images per second decoded and augmented (RandomResizedCrop 224, flip) by our StreamLoader
   with 0, 2 and all workers, against torchvision's own ImageFolder + DataLoader with the same
   transforms and workers (the baseline: ratio > 1 means ours is faster). The images are
   JPEGs of --side pixels written to a temporary folder (ImageNet's average is about 400 x 350).
2. Seconds per training epoch of resnet20s on digits with 2 ranks under torchrun (gloo, one
   thread each) against one process with the same two threads: what DistributedDataParallel's
   gradient exchange costs where there is no second device to gain from.
Nothing else should run meanwhile: on 2 cores any other load ruins both figures.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from common import ROOT, line

from dataset.folders import StreamLoader, load_class_folders, train_transform


def write_images(root, classes, per_class, side):
    from PIL import Image

    rng = np.random.RandomState(0)
    for split, count in (("train", per_class), ("val", 1)):
        for c in range(classes):
            folder = os.path.join(root, split, f"n{c:08d}")
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                # smooth noise compresses like a photograph, not like white noise
                small = rng.randint(0, 255, (side // 16, side // 16, 3), dtype=np.uint8)
                Image.fromarray(small).resize((side, int(side * 0.85)), Image.BILINEAR).save(os.path.join(folder, f"{i}.JPEG"), quality=90)


def images_per_second(loader, n):
    start = time.perf_counter()
    seen = sum(len(labels) for _, labels in loader)
    assert seen == n
    return n / (time.perf_counter() - start)


def data_path(args):
    with tempfile.TemporaryDirectory() as root:
        write_images(root, args.classes, args.images_per_class, args.side)
        train, _, _ = load_class_folders(root)
        n = len(train)
        from torchvision.datasets import ImageFolder

        plain = ImageFolder(os.path.join(root, "train"), transform=train_transform())
        for workers in sorted({0, 2, os.cpu_count()}):
            train.num_workers = workers
            ours = StreamLoader(train, batch_size=args.batch_size, shuffle=True, augment=train_transform(), seed=0)
            theirs = torch.utils.data.DataLoader(plain, batch_size=args.batch_size, shuffle=True, num_workers=workers)
            images_per_second(ours, n)  # warm the page cache
            baseline = max(images_per_second(theirs, n) for _ in range(2))
            ours_rate = max(images_per_second(ours, n) for _ in range(2))
            # line() reports baseline/ours of times: give it seconds per image
            print(line(f"decode+augment, {workers} workers, images/s {baseline:.0f} -> {ours_rate:.0f}", 1 / baseline, 1 / ours_rate))


DDP_EPOCH = """
import sys, time, torch
import distributed
from dataset import TensorLoader, load_digits_splits
from models import create_model
from trainer import make_optimizer, train_epoch
distributed.init()
torch.set_num_threads(int(sys.argv[1]))
splits = load_digits_splits()
torch.manual_seed(0)
model = create_model("resnet20s", 10, splits.mean, splits.std)
loader = TensorLoader(splits.train, batch_size=128, shuffle=True, seed=0)
optimizer = make_optimizer(model, 0.05, 0.9, 5e-4)
train_epoch(model, loader, optimizer, torch.device("cpu"))
seconds = min(train_epoch(model, loader, optimizer, torch.device("cpu"))["seconds"] for _ in range(3))
if distributed.is_main():
    print(seconds)
distributed.finish()
"""


def ddp_overhead():
    env = dict(os.environ, PYTHONPATH=ROOT)
    alone = subprocess.run([sys.executable, "-c", DDP_EPOCH, "2"], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(DDP_EPOCH)
    try:
        two = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", f.name, "1"],
            capture_output=True, text=True, env=dict(env, OMP_NUM_THREADS="1"), cwd=ROOT, check=True,
        )  # fmt: skip
    finally:
        os.remove(f.name)
    one_s, two_s = float(alone.stdout.split()[-1]), float(two.stdout.split()[-1])
    print(line("resnet20s digits epoch, 1 process x 2 threads -> 2 ranks x 1 thread (gloo)", one_s, two_s))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--images_per_class", type=int, default=40)
    parser.add_argument("--side", type=int, default=400)
    parser.add_argument("--batch_size", type=int, default=64)
    args = parser.parse_args()
    data_path(args)
    ddp_overhead()


if __name__ == "__main__":
    main()
