"""Shared plumbing: errors for bad input, device and seeds, file names, safe checkpoints.

Everything that touches the disk goes through here, so every file is written
atomically (temporary file in the same folder, then rename) and every checkpoint
is read with `weights_only=True` (a checkpoint cannot run code).
"""

import glob
import json
import logging
import logging.handlers
import os
import pickle
import pickletools
import random
import signal
import sys
import tempfile
import time
import zipfile
from contextlib import contextmanager

import numpy as np
import torch

log = logging.getLogger("unlearn_sparse")


class UserError(Exception):
    """Bad input: the message says what is wrong and how to fix it (exit code 2)."""


class Preempted(Exception):
    """SIGTERM arrived (Slurm sends it before killing or re-queueing a job)."""


PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what a shell reports for a job killed by it


def _raise_preempted(signum, frame):
    raise Preempted(signal.Signals(signum).name)


def run_cli(main):
    """Run an entry script's `main()`.

    Bad input gives one line on stderr and exit 2: log lines are held back until the
    script calls `open_save_dir` (its checks passed), and dropped when a check fails.
    SIGTERM stops the run between two steps with exit 143; every file is written
    atomically and the scripts checkpoint every epoch, so `--resume` continues from
    the last finished epoch.
    """
    signal.signal(signal.SIGTERM, _raise_preempted)
    try:
        main()
    except UserError as err:
        _drop_held_logs()
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except Preempted as stop:
        _release_held_logs()
        print(f"stopped by {stop}: rerun the same command with --resume to continue from the last saved checkpoint", file=sys.stderr)
        sys.exit(PREEMPTED_EXIT_CODE)


_held_logs = None  # the MemoryHandler holding log lines until the checks have passed


def setup_logging():
    """INFO lines with a time stamp on stderr, held back until `open_save_dir` (see run_cli)."""
    global _held_logs
    stream = logging.StreamHandler()
    stream.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    _held_logs = logging.handlers.MemoryHandler(capacity=1_000_000, flushLevel=logging.CRITICAL + 1, target=stream, flushOnClose=False)
    root = logging.getLogger()
    root.handlers = [_held_logs]
    root.setLevel(logging.INFO)


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
    os.makedirs(save_dir, exist_ok=True)
    if resume:
        return None
    found = sorted({path for pattern in finished_files for path in glob.glob(os.path.join(glob.escape(save_dir), pattern))})
    if not found:
        return None
    stamp = os.path.join(save_dir, "previous-" + time.strftime("%Y%m%d-%H%M%S"))
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


def get_device(gpu=0):
    """CUDA device `gpu` when CUDA exists, else Apple MPS when present, else the CPU."""
    if torch.cuda.is_available():
        if not 0 <= gpu < torch.cuda.device_count():
            raise UserError(f"--gpu {gpu}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", gpu)
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def setup_seed(seed):
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


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
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


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


# ---------------------------------------------------------------- file names (one place)


def checkpoint_path(save_dir, state, filename="checkpoint.pth.tar"):
    """`<save_dir>/<state>checkpoint.pth.tar`, the original's naming."""
    return os.path.join(save_dir, f"{state}{filename}")


def best_checkpoint_path(save_dir, state):
    return checkpoint_path(save_dir, state, "model_SA_best.pth.tar")


def rewind_weight_path(save_dir, epoch):
    return os.path.join(save_dir, f"epoch_{epoch}_rewind_weight.pt")


def training_curve_path(save_dir, state):
    return os.path.join(save_dir, f"{state}net_train.png")


def forget_indexes_path(save_dir):
    return os.path.join(save_dir, "forget_indexes.npy")


def unlearn_checkpoint_path(save_dir, method):
    """`<save_dir>/<method>checkpoint.pth.tar`: the unlearned model and its evaluation."""
    return checkpoint_path(save_dir, method)


def eval_result_path(save_dir, method):
    return checkpoint_path(save_dir, method, "eval_result.pth.tar")


def eval_json_path(save_dir, method):
    return checkpoint_path(save_dir, method, "eval_result.json")


def imp_summary_path(save_dir):
    return os.path.join(save_dir, "imp_summary.json")


# ---------------------------------------------------------------- atomic writes


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _current_umask()  # read once, at import (os.umask can only be read by setting it)


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only on success."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes it private; results are shared as any file the user writes
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_torch_save(obj, path):
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_save_json(obj, path):
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=_json_default)
            f.write("\n")


def atomic_save_npy(array, path):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    return str(value)


def save_checkpoint(state, is_SA_best, save_path, pruning, filename="checkpoint.pth.tar"):
    """Write `<pruning>checkpoint.pth.tar`, and `<pruning>model_SA_best.pth.tar` when best."""
    atomic_torch_save(state, checkpoint_path(save_path, pruning, filename))
    if is_SA_best:
        atomic_torch_save(state, best_checkpoint_path(save_path, pruning))


# ---------------------------------------------------------------- safe loading


def pickled_globals(path):
    """The `module.name`s a checkpoint's pickle would import on loading, read without loading it.

    None when the file is not a readable pickle (torch.save's zip or legacy format).
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                data = archive.read(member)
        else:
            with open(path, "rb") as f:
                data = f.read()
        names, strings = [], []
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name == "GLOBAL":
                names.append(arg.replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
        return names
    except Exception:
        return None


def load_checkpoint(path, device="cpu", what="checkpoint"):
    """Load a checkpoint with `weights_only=True`, or raise UserError in one line."""
    if not path:
        raise UserError(f"no {what} file given")
    if not os.path.isfile(path):
        raise UserError(f"{what} file not found: {path}")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        called = [name for name in pickled_globals(path) or [] if not name.startswith(("torch.", "collections.OrderedDict", "_codecs."))]
        if called:  # a well-formed pickle that names a function or class to call on loading
            raise UserError(
                f"refusing to load {path}: it holds more than tensors and plain data (a pickled object that could run code: {called[0]})"
            ) from None
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        detail = next((line for line in lines if "Unsupported" in line), type(err).__name__)
        raise UserError(f"cannot read {what} {path}: not a PyTorch checkpoint, or damaged ({detail})") from None
    except Exception as err:  # a truncated, foreign or non-torch file fails in many ways
        detail = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot read {what} {path}: not a PyTorch checkpoint, or damaged ({type(err).__name__}: {detail})") from None


def state_dict_of(checkpoint):
    """The model state dict of a checkpoint: a bare state dict or one under 'state_dict'."""
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        return checkpoint["state_dict"]
    if isinstance(checkpoint, dict) and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return checkpoint
    raise UserError("the file holds neither a state dict nor a dict with a 'state_dict' entry")


# ---------------------------------------------------------------- metrics helpers


class AverageMeter:
    """Running average (kept from the original for code written against it)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.val = self.avg = self.sum = 0.0
        self.count = 0

    def update(self, val, n=1):
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


def accuracy(output, target, topk=(1,)):
    """Precision@k in percent for each k (the original's helper)."""
    maxk = max(topk)
    _, pred = output.topk(maxk, 1, True, True)
    correct = pred.t().eq(target.view(1, -1))
    return [correct[:k].reshape(-1).float().sum(0) * (100.0 / target.size(0)) for k in topk]


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


def complete_stages(result, stages, save):
    """Compute each named stage missing from `result`, calling `save()` after each one.

    Returns True when anything was computed (a finished run resumed computes nothing).
    """
    computed = False
    for name, stage in stages.items():
        if name not in result:
            result[name] = stage()
            computed = True
            save()
    return computed


def plot_training_curve(history, path):
    """Train and val accuracy per epoch, written atomically to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("train_ta", "train acc"), ("val_ta", "val acc"), ("test_ta", "test acc")):
        if history.get(key):
            ax.plot(range(1, len(history[key]) + 1), history[key], label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.legend()
    ax.grid(alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
