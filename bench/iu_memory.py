"""IU's peak memory at two batch sizes, same chunk size: streamed gradients against whole batches.

    python bench/iu_memory.py [--batch_sizes 32,512] [--chunk 32] [--arch resnet20s]

Each measurement runs in a subprocess of its own on the CPU (digits, an untrained model,
class 0 forgotten, --iu_damping 1000 as the original): after loading, its peak resident
set is reset (Linux `/proc/self/clear_refs`), IU runs, and the peak is read back
(`VmHWM`). Printed per batch size: the process's peak and the part above what it held
before IU; then the ratio of the largest batch size's peak to the smallest's. The
baseline is the same IU with each batch's per-sample gradients gathered into one matrix
first (how IU worked before the stream), so the two lines differ only in that.

On a GPU, `--gpu 0` reports torch's peak CUDA allocation instead (`max_memory_allocated`).
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def whole_batch_stream(model, loader, chunk_size=None, desc=""):
    """The pre-stream behaviour: each batch's chunks concatenated into one (batch, P) matrix."""
    import torch

    from unlearn.gradients import per_sample_gradient_chunks

    device = next(model.parameters()).device
    for images, labels in loader:
        yield torch.cat(list(per_sample_gradient_chunks(model, images.to(device), labels.to(device), chunk_size)))


def child(batch_size, chunk, arch, whole_batches, gpu, retain=None):
    """One measurement (run in the subprocess): prints a JSON line."""
    sys.path.insert(0, ROOT)
    from types import SimpleNamespace

    import torch

    import unlearn.wfisher as wf
    from dataset import TensorLoader, load_dataset
    from models import create_model

    torch.set_num_threads(1)
    device = torch.device("cuda", gpu) if gpu is not None else torch.device("cpu")
    splits = load_dataset(SimpleNamespace(dataset="digits", no_aug=False))
    torch.manual_seed(0)
    model = create_model(arch, splits.num_classes, splits.mean, splits.std).to(device)
    labels = splits.train.labels
    data = splits.train.to(device)
    loaders = {
        "forget": TensorLoader(data, torch.nonzero(labels == 0).flatten(), batch_size=batch_size),
        "retain": TensorLoader(data, torch.nonzero(labels != 0).flatten()[:retain], batch_size=batch_size),
    }
    if whole_batches:  # as before the stream: whole batches through the backward passes too
        wf.retain_gradient_stream = whole_batch_stream
        summed = wf.summed_gradient
        wf.summed_gradient = lambda model, loader, chunk_size=None: summed(model, loader, chunk_size=len(labels))
    args = SimpleNamespace(alpha=3.0, iu_damping=1000, iu_chunk_size=chunk)
    start = [p.detach().double().clone() for p in model.parameters()]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident set to the current one
        before = _status_kib("VmRSS") * 1024
    wf.wfisher(loaders, model, None, args)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = _status_kib("VmHWM") * 1024
    moved = [float((p.detach().double() - q).abs().sum()) for p, q in zip(model.parameters(), start)]
    print(json.dumps({"before": before, "peak": peak, "moved": moved}))


def measure(batch_size, chunk, arch, whole_batches=False, gpu=None, retain=None):
    command = [sys.executable, os.path.abspath(__file__), "--child", str(batch_size), "--chunk", str(chunk), "--arch", arch]
    command += ["--retain", str(retain)] if retain is not None else []
    command += ["--whole_batches"] if whole_batches else []
    command += ["--gpu", str(gpu)] if gpu is not None else []
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"batch size {batch_size}: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(batch_sizes, chunk, arch, gpu=None, retain=None):
    """Lines of figures; returns {(mode, batch size): measurement}."""
    mib = 2**20
    results = {}
    for whole in (True, False):
        mode = "whole batches (before)" if whole else "streamed"
        for batch_size in batch_sizes:
            r = results[mode, batch_size] = measure(batch_size, chunk, arch, whole, gpu, retain)
            print(
                f"iu_memory {mode}, batch {batch_size}, chunk {chunk}: peak {r['peak'] / mib:.0f} MiB, "
                f"{(r['peak'] - r['before']) / mib:.0f} MiB above the {r['before'] / mib:.0f} MiB held before IU",
                flush=True,
            )
        small, large = results[mode, batch_sizes[0]], results[mode, batch_sizes[-1]]
        print(f"iu_memory {mode}: peak at batch {batch_sizes[-1]} / at {batch_sizes[0]}: {large['peak'] / small['peak']:.2f}x", flush=True)
    # How far IU moved each tensor: the two ways differ only by float rounding (sums grouped otherwise).
    worst = max(
        abs(a - b) / max(abs(b), 1e-30)
        for size in batch_sizes
        for a, b in zip(results["streamed", size]["moved"], results["whole batches (before)", size]["moved"])
    )
    print(f"iu_memory: largest relative difference of the update, streamed against whole batches: {worst:.1e}")
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_sizes", default="32,512")
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--arch", default="resnet20s")
    parser.add_argument("--gpu", type=int, default=None)
    parser.add_argument("--retain", type=int, default=None, help="the first N retain images only (default: all 1,170)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--whole_batches", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.chunk, args.arch, args.whole_batches, args.gpu, args.retain)
        return
    report(sorted(int(b) for b in args.batch_sizes.split(",")), args.chunk, args.arch, args.gpu, args.retain)


if __name__ == "__main__":
    main()
