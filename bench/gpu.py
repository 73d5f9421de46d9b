"""GPU figures: resnet18 epochs on CIFAR-10-shaped data, and IU / FF on the GPU.

    python bench/gpu.py [--images 45000] [--gpu 0]      (bench/run.py --gpu runs it)

Seconds per training epoch of `resnet18` over `--images` random CIFAR-shaped images
(uint8, 10 classes), batch 256, SGD, fed three ways:
  torchvision  DataLoader over PIL images, RandomCrop(32, 4) + flip + ToTensor, 4 workers,
               pinned memory (the original's CIFAR-10 loader)
  tensor       our TensorLoader: images on the GPU, crops/flips as batched tensor ops
  tensor+amp   the same with --amp (bfloat16 autocast) and --channels_last
Each is warmed up on 20 batches, then one whole epoch is timed. Then the IU per-sample
gradient and FF Fisher ratios (bench/iu_grads.py, bench/ff.py) for resnet20s and resnet18.
"""

import argparse
import time

import ff  # noqa: E402
import iu_grads  # noqa: E402
import numpy as np
import torch
from common import line  # noqa: E402
from pipeline import PILImages  # noqa: E402
from train_speed import DeviceLoader  # noqa: E402

from dataset import Augment, ImageSet, TensorLoader  # noqa: E402
from models import create_model  # noqa: E402
from trainer import make_optimizer, train_epoch  # noqa: E402
from utils import device_synchronize, get_device, setup_seed  # noqa: E402

CIFAR_MEAN, CIFAR_STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]


class FirstBatches:
    """The first `n` batches of a loader (a warm-up that is not an epoch)."""

    def __init__(self, loader, n):
        self.loader, self.n = loader, n

    def __len__(self):
        return min(self.n, len(self.loader))

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if i >= self.n:
                break
            yield batch


def cifar_shaped(n_images):
    rng = np.random.RandomState(0)
    return rng.randint(0, 256, (n_images, 32, 32, 3), dtype=np.uint8), rng.randint(0, 10, n_images)


def epoch_seconds(arch, loader, device, amp=False, channels_last=False):
    setup_seed(1)
    model = create_model(arch, 10, CIFAR_MEAN, CIFAR_STD).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, 0.1, 0.9, 5e-4)
    options = dict(amp=amp, channels_last=channels_last)
    train_epoch(model, FirstBatches(loader, 20), optimizer, device, desc=f"{arch} warm-up", **options)
    device_synchronize(device)
    start = time.perf_counter()
    train_epoch(model, loader, optimizer, device, desc=arch, **options)
    device_synchronize(device)
    return time.perf_counter() - start


def resnet18_epochs(device, n_images=45000, batch_size=256, workers=4, arch="resnet18"):
    """{pipeline name: seconds per epoch} for `arch` (resnet18) on n_images CIFAR-shaped images."""
    from torchvision import transforms

    hwc, labels = cifar_shaped(n_images)
    transform = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor()])
    torchvision_loader = torch.utils.data.DataLoader(
        PILImages(hwc, labels, transform), batch_size=batch_size, shuffle=True, num_workers=workers, pin_memory=device.type == "cuda"
    )
    data = ImageSet(torch.from_numpy(hwc.transpose(0, 3, 1, 2).copy()), torch.from_numpy(labels)).to(device)
    ours = TensorLoader(data, batch_size=batch_size, shuffle=True, augment=Augment(32, 4, flip=True), seed=0)
    return {
        "torchvision": epoch_seconds(arch, DeviceLoader(torchvision_loader, device), device),
        "tensor": epoch_seconds(arch, ours, device),
        "tensor+amp+channels_last": epoch_seconds(arch, ours, device, amp=True, channels_last=True),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=45000)
    parser.add_argument("--gpu", type=int, default=0)
    parser.add_argument("--archs", nargs="+", default=["resnet20s", "resnet18"], help="models for the IU and FF ratios")
    parser.add_argument("--epoch_arch", default="resnet18", help="the model of the timed epochs")
    parser.add_argument("--iu_samples", type=int, default=256)
    parser.add_argument("--ff_batches", type=int, default=8)
    args = parser.parse_args()
    run(get_device(args.gpu), args.images, args.archs, args.epoch_arch, args.iu_samples, args.ff_batches)


def run(device, n_images=45000, archs=("resnet20s", "resnet18"), epoch_arch="resnet18", iu_samples=256, ff_batches=8):
    if device.type == "cuda":
        print(f"# GPU: {torch.cuda.get_device_name(device)}", flush=True)
    seconds = resnet18_epochs(device, n_images, arch=epoch_arch)
    base = seconds["torchvision"]
    for name, s in seconds.items():
        rate = f"{s:.2f} s, {n_images / s:.0f} images/s ({base / s:.2f}x torchvision)"
        print(f"{epoch_arch}_epoch[{name}] ({n_images} CIFAR-shaped images): {rate}", flush=True)
    for arch in archs:
        t_loop, t_batched, t_floor, error = iu_grads.measure(device, arch, samples=iu_samples)
        iu_line = line(f"iu_per_sample_grads ({arch}, {iu_samples} samples)", t_loop, t_batched, t_floor)
        print(iu_line + f"; rel. diff {error:.1e}", flush=True)
        seconds = ff.measure(device, arch, batches=ff_batches)
        print(line(f"ff_fisher ({arch}, {ff_batches} batches of 32)", seconds["loop"], seconds["default"], seconds["floor"]), flush=True)
        print(f"  ff methods ({arch}): {ff.method_report(seconds)}", flush=True)


if __name__ == "__main__":
    main()
