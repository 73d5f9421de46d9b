"""Files on disk, written and read safely: every write is atomic (a temporary file in the
same folder, then a rename), and every checkpoint is read with `weights_only=True` (a
checkpoint cannot run code) or refused in one line.
"""

import json
import os
import pickle
import pickletools
import tempfile
import time
import zipfile
from contextlib import contextmanager

import numpy as np
import torch

import distributed
from errors import Preempted, UserError


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _current_umask()  # read once, at import (os.umask can only be read by setting it)


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only on success.

    Under several processes (distributed.py) only rank 0 writes: the others are given
    /dev/null (the writers below then skip the work of pickling), and every rank waits
    until the file is in place, so that what one rank reads next is what rank 0 wrote; when
    rank 0 fails to write it, every rank stops.
    """
    if distributed.active():
        try:
            if distributed.is_main():
                with _atomic_path(path) as tmp:
                    yield tmp
            else:
                yield os.devnull
        except Preempted:
            raise  # SIGTERM reaches every process: no one waits for this one
        except Exception:
            distributed.all_succeeded(False)  # the others stop too, rather than wait for this rank
            raise
        if not distributed.all_succeeded(True):
            raise RuntimeError(f"{path}: another process failed while this file was written (its error is in its log)")
        return
    with _atomic_path(path) as tmp:
        yield tmp


@contextmanager
def _atomic_path(path):
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
        if tmp != os.devnull:  # another rank's copy would only be thrown away
            torch.save(obj, tmp)


def atomic_save_json(obj, path):
    with atomic_path(path) as tmp:
        if tmp != os.devnull:
            with open(tmp, "w") as f:
                json.dump(obj, f, indent=2, default=_json_default)
                f.write("\n")


def atomic_save_npy(array, path):
    with atomic_path(path) as tmp:
        if tmp != os.devnull:
            with open(tmp, "wb") as f:
                np.save(f, array)


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    return str(value)


DEFAULT_CHECKPOINT_EVERY_S = 60.0


class CheckpointSchedule:
    """When a resume checkpoint is due: once `every_s` seconds have passed since the last one
    (or since the run began), and whenever the caller says the point must be kept (the end of
    a pruning state). `every_s` 0 writes at every epoch, as the original did.

    A checkpoint of a CIFAR model takes a large share of a 2-3 s epoch on a fast GPU; one a
    minute costs under 1% there, and every epoch is still written where an epoch takes longer.
    Under several processes rank 0's clock decides, so that every rank joins the same writes.
    """

    def __init__(self, every_s, clock=time.monotonic):
        self.every_s, self.clock = every_s, clock
        self.last = clock()

    def due(self, keep=False):
        if keep or self.every_s <= 0:
            return True
        return bool(distributed.from_rank_0(lambda: self.clock() - self.last >= self.every_s))

    def written(self):
        self.last = self.clock()


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
