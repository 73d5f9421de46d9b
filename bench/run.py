"""Every benchmark, one line each: `<name>: <baseline s> -> <ours s> (<ratio>x)`.

    python bench/run.py [--quick] [--gpu [N]]

`--gpu` adds the GPU figures of bench/gpu.py (resnet18 epochs on CIFAR-10-shaped data with
three pipelines, IU and FF on the GPU) and runs everything on CUDA device N (default 0).

Baseline and ours run in the same process on the same data; a floor is printed where
one exists. Run it alone on the machine: other load distorts the timings (on 2 cores a
second torch process makes every OpenMP region wait for a descheduled thread).
"""

import argparse
import os
import platform

import demo  # noqa: E402
import ff  # noqa: E402
import gpu  # noqa: E402
import iu_grads  # noqa: E402
import iu_memory  # noqa: E402
import mia  # noqa: E402
import pipeline  # noqa: E402
import torch
import train_speed  # noqa: E402
from common import line  # noqa: E402

from utils import get_device  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", type=int, nargs="?", const=0, default=None, help="also the GPU figures, on CUDA device N")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and no make_demo (a smoke run, not figures to report)")
    args = parser.parse_args()
    device = get_device(args.gpu or 0)
    if args.gpu is not None and device.type != "cuda":
        parser.error("--gpu: no CUDA device here")
    print(f"# {platform.node()}: {os.cpu_count()} CPU cores, device {device}, torch {torch.__version__}")
    scale = 4 if args.quick else 1

    t_base, t_ours = pipeline.measure(device, n_images=10000 // scale)
    print(line("data_pipeline (one epoch of CIFAR-shaped images)", t_base, t_ours), flush=True)
    t_base, t_ours = train_speed.measure_epoch(device, "resnet20s")
    print(line("train_epoch (resnet20s, digits)", t_base, t_ours), flush=True)
    t_loop, t_batched, t_floor, _ = iu_grads.measure(device, samples=256 // scale)
    print(line("iu_per_sample_grads (resnet20s)", t_loop, t_batched, t_floor), flush=True)
    if device.type == "cpu":  # peak resident set of a subprocess at two batch sizes, same chunk
        iu_memory.report([32, 512], 32, "resnet20s")
    seconds = ff.measure(device, batches=8 // scale)
    print(
        line("ff_fisher (resnet20s)", seconds["loop"], seconds["default"], seconds["floor"]) + f"; {ff.method_report(seconds)}", flush=True
    )
    t_seq, t_par = mia.measure(n=2000 // scale)
    print(line("membership_inference (both attacks)", t_seq, t_par), flush=True)
    if not args.quick:  # about 15 minutes on 2 cores
        print(line("make_demo (digits grid, 1 worker -> 2 workers)", *demo.measure()), flush=True)
    if args.gpu is not None:
        gpu.run(device, n_images=45000 // scale)


if __name__ == "__main__":
    main()
