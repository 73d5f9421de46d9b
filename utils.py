"""Process plumbing: the command-line lifecycle (bad input, SIGTERM, held-back logs), the
device, RNG states and library versions. File names are in `paths.py`, writing and
reading files in `checkpoints.py`.
"""

import glob
import logging
import logging.handlers
import os
import random
import signal
import sys
import time

import numpy as np
import torch

import distributed
import paths
from errors import Preempted, UserError

log = logging.getLogger("unlearn_sparse")


PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what a shell reports for a job killed by it


_stopped_by = None  # the signal's name once SIGTERM arrived


def _raise_preempted(signum, frame):
    global _stopped_by
    if _stopped_by is not None:
        return  # stopping already: a second SIGTERM changes nothing
    _stopped_by = signal.Signals(signum).name
    raise Preempted(_stopped_by)


def run_cli(main):
    """Run an entry script's `main()`.

    Bad input gives one line on stderr and exit 2: log lines are held back until the
    script calls `open_save_dir` (its checks passed), and dropped when a check fails.
    SIGTERM stops the run with exit 143; every file is written atomically and the scripts
    checkpoint every epoch, so `--resume` continues from the last finished epoch.
    """
    signal.signal(signal.SIGTERM, _raise_preempted)
    try:
        _run_main(main)
    except UserError as err:
        _drop_held_logs()
        print(f"error: {err}", file=sys.stderr)
        _leave_process_group()
        sys.exit(2)
    except Preempted:
        _release_held_logs()
        print(f"stopped by {_stopped_by}: rerun the same command with --resume to continue from the last saved checkpoint", file=sys.stderr)
        _leave_process_group()
        sys.exit(PREEMPTED_EXIT_CODE)


def _leave_process_group():
    """Leave the process group on the way out of a refused or stopped run: a group still open
    at interpreter exit can abort the process ("terminate called without an active
    exception") after its one line was printed, and the exit status is then lost."""
    try:
        distributed.finish()
    except Exception:  # the peers may be gone already; the exit status is what matters
        pass


def _run_main(main):
    try:
        # The process group is joined once the device is chosen (get_device); the rank is known from torchrun's environment.
        if not distributed.is_main():
            sys.stdout = open(os.devnull, "w")  # rank 0 prints the results; errors still reach stderr
        main()
        distributed.finish()
    except (UserError, Preempted):
        raise
    except Exception as error:
        # Under torchrun a process waiting in a collective sees a stopped peer as a broken
        # connection, possibly before its own SIGTERM reached the handler: let it arrive.
        time.sleep(0.2)
        if _stopped_by is not None:
            raise Preempted(_stopped_by) from error
        raise


_held_logs = None  # the MemoryHandler holding log lines until the checks have passed


def setup_logging():
    """INFO lines with a time stamp on stderr, held back until `open_save_dir` (see run_cli)."""
    global _held_logs
    stream = logging.StreamHandler()
    stream.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    _held_logs = logging.handlers.MemoryHandler(capacity=1_000_000, flushLevel=logging.CRITICAL + 1, target=stream, flushOnClose=False)
    root = logging.getLogger()
    root.handlers = [_held_logs]
    root.setLevel(logging.INFO if distributed.is_main() else logging.WARNING)  # one log, rank 0's


def _release_held_logs():
    """Print the held lines and log directly from now on."""
    global _held_logs
    if _held_logs is None:
        return
    root = logging.getLogger()
    root.removeHandler(_held_logs)
    _held_logs.flush()
    root.addHandler(_held_logs.target)
    _held_logs = None


def _drop_held_logs():
    global _held_logs
    if _held_logs is not None:
        _held_logs.buffer.clear()
        logging.getLogger().removeHandler(_held_logs)
        _held_logs = None


def open_save_dir(save_dir, finished_files=(), resume=False):
    """The checks have passed: show the log, create --save_dir, keep finished results aside.

    Without --resume, files of an earlier run that this run would overwrite
    (`finished_files`, glob patterns in save_dir) move to save_dir/previous-<time>/,
    and a warning names that folder: nothing is destroyed silently.
    """
    _release_held_logs()
    if not distributed.is_main():  # rank 0 makes the folder and keeps earlier results aside
        distributed.barrier()
        return None
    try:
        return _open_save_dir(save_dir, finished_files, resume)
    finally:
        distributed.barrier()


def _open_save_dir(save_dir, finished_files, resume):
    os.makedirs(save_dir, exist_ok=True)
    if resume:
        return None
    found = sorted({path for pattern in finished_files for path in glob.glob(os.path.join(glob.escape(save_dir), pattern))})
    if not found:
        return None
    stamp = os.path.join(save_dir, paths.PREVIOUS_PREFIX + time.strftime("%Y%m%d-%H%M%S"))
    aside, n = stamp, 1
    while os.path.exists(aside):
        aside, n = f"{stamp}.{n}", n + 1
    os.makedirs(aside)
    for path in found:
        os.replace(path, os.path.join(aside, os.path.basename(path)))
    names = ", ".join(os.path.basename(p) for p in found[:4]) + (", ..." if len(found) > 4 else "")
    log.warning("%s held results of an earlier run (%s): moved them to %s (use --resume to continue a run instead)", save_dir, names, aside)
    return aside


# ---------------------------------------------------------------- device and seeds


DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def pick_device(requested="auto", gpu=0, *, launched=False, local_rank=0, cuda_count=0, mps=False):
    """The device a process runs on, from what it asked for and what it sees (pure: the tests fake the rest).

    - `requested`: --device; "auto" is CUDA when a GPU is visible, else Apple MPS, else the CPU.
    - On CUDA under torchrun (or srun) a process takes the GPU of its LOCAL_RANK; a process
      that sees a single GPU (Slurm's --gpus-per-task=1) takes it, whatever its LOCAL_RANK.
    - On CUDA in a single process, --gpu picks the GPU.
    """
    if requested not in DEVICE_CHOICES:
        raise UserError(f"--device {requested}: choose one of {', '.join(DEVICE_CHOICES)}")
    if requested == "cpu" or (requested == "auto" and not cuda_count and not mps):
        return torch.device("cpu")
    if requested == "mps" or (requested == "auto" and not cuda_count):
        if not mps:
            raise UserError("--device mps: Apple's MPS is not available here; use --device cpu or auto")
        return torch.device("mps")
    if not cuda_count:
        raise UserError("--device cuda: no CUDA device is visible here (CUDA_VISIBLE_DEVICES, the job's GPUs); use --device cpu or auto")
    if not launched:
        if not 0 <= gpu < cuda_count:
            raise UserError(f"--gpu {gpu}: this process sees {cuda_count} CUDA device(s), numbered 0 to {cuda_count - 1}")
        return torch.device("cuda", gpu)
    if cuda_count == 1:
        return torch.device("cuda", 0)
    if local_rank >= cuda_count:
        raise UserError(
            f"process {local_rank} on this node, but it sees {cuda_count} GPUs: start at most one process per GPU "
            "(torchrun --nproc_per_node, or the GPUs the job asks for), or give each task one GPU (--gpus-per-task=1)"
        )
    return torch.device("cuda", local_rank)


def get_device(gpu=0, requested="auto", cudnn_benchmark=False):
    """The run's device, chosen once: made the current CUDA device, and the process group
    (under torchrun) joined with the backend that fits it (NCCL on CUDA, gloo otherwise).

    `cudnn_benchmark` lets cuDNN pick its fastest kernels (not bit-repeatable); off, cuDNN
    runs deterministically, as the original (docs/performance.md says what repeats).
    """
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = pick_device(
        requested, gpu, launched=distributed.launched(), local_rank=distributed.local_rank(), cuda_count=cuda_count, mps=mps
    )
    if device.type == "cuda":
        torch.cuda.set_device(device)  # else pinned-memory threads and NCCL open a context on GPU 0
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.backends.cudnn.deterministic = not cudnn_benchmark
    distributed.init(device)
    return device


def setup_seed(seed):
    """Seed python, numpy and torch (all devices); cuDNN deterministic unless --cudnn_benchmark chose speed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = not torch.backends.cudnn.benchmark


def rng_state():
    """Every global RNG state, to put in a checkpoint."""
    state = {
        "python": random.getstate(),
        "numpy": _numpy_state_plain(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(_as_python_state(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys.cpu() if torch.is_tensor(keys) else keys, dtype=np.uint32), pos, has_gauss, cached))
    # A checkpoint loaded with map_location="cuda" brings these back on the GPU; RNG states live on the CPU.
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        # one state per GPU the saving process saw; a machine (or torchrun process) may see fewer
        for index, saved in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(saved.cpu(), index)


def _numpy_state_plain():
    # weights_only loading accepts tensors and plain Python values, not numpy arrays.
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)


def _as_python_state(state):
    # A checkpoint round trip turns the tuple inside random.getstate() into a list.
    version, internal, gauss = state
    return version, tuple(internal), gauss


def device_synchronize(device):
    """Wait for queued device work, so that a clock read afterwards is honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# ---------------------------------------------------------------- records


def versions():
    """Library versions, stored beside every result."""
    import platform
    from importlib.metadata import version  # the installed versions, without importing torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": version("torchvision"),
        "numpy": np.__version__,
        "scikit-learn": version("scikit-learn"),
    }
