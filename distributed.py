"""One run over several processes: `torchrun --nproc_per_node N main_imp.py ...` (and across nodes).

Every entry script detects torchrun from its environment (WORLD_SIZE > 1) and, once its
device is chosen (`utils.get_device`), joins the process group with the backend of that
device (NCCL on CUDA, gloo on the CPU); with one process nothing here does anything.
What changes under several processes, and where:

- training (`trainer.train_epoch`): each global batch of --batch_size images is split
  across the ranks (`split_batches`), the model is wrapped in DistributedDataParallel, and
  each rank's loss is weighted by its share of the batch, so the gradient is the global
  batch's mean exactly as in one process;
- sums over a set (FF's Fisher, IU's gradients, SalUn's saliency) and inference
  (`trainer.predict`): each rank takes a contiguous block of the batches (`batch_block`);
  sums are all-reduced, logits gathered in order on every rank;
- files: only rank 0 writes (checkpoints.py) and logs; the other ranks' stdout is dropped.

The data order and the augmentation come from the loaders' seeded generators, the same on
every rank, so a checkpoint resumes on any number of processes.
"""

import datetime
import gc
import logging
import os
import weakref

import torch
import torch.distributed as dist

from errors import UserError

log = logging.getLogger("unlearn_sparse")
COLLECTIVE_TIMEOUT_S = 2 * 3600


def rank_share(count, rank, world):
    """(start, stop): rank's contiguous share of `count` items split as evenly as possible over `world` ranks."""
    base, extra = divmod(count, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def launched():
    """True under torchrun (or any launcher that sets WORLD_SIZE) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device):
    """Join the process group torchrun describes, with the backend that fits `device` (NCCL
    for CUDA, gloo for the CPU, whatever else is visible); nothing for a single process."""
    if not launched() or dist.is_initialized():
        return
    # Evaluation fits the membership attack on every rank alike, which can take long on
    # ImageNet: a generous timeout, so that a rank waiting for a slower one is not killed.
    timeout = datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S)
    if device.type == "cuda":
        dist.init_process_group("nccl", device_id=device, timeout=timeout)
    else:
        dist.init_process_group("gloo", timeout=timeout)


def finish():
    """Leave the process group. The DistributedDataParallel wrappers go first: destroyed at
    interpreter exit, after the group, one can abort the process (C++ "terminate called")."""
    _wrapped.clear()
    gc.collect()
    if dist.is_initialized():
        dist.destroy_process_group()


def active():
    return dist.is_initialized() and dist.get_world_size() > 1


def world_size():
    return dist.get_world_size() if dist.is_initialized() else 1


def rank():
    """This process's rank: the group's, or torchrun's RANK before the group is joined."""
    if dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if launched() else 0


def local_rank():
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main():
    """The process that writes files and logs: rank 0, or the only one."""
    return rank() == 0


def no_progress_bar():
    """tqdm's `disable`: None on rank 0 (a bar when on a terminal), True on the other ranks."""
    return None if is_main() else True


def barrier():
    if active():
        dist.barrier()


def from_rank_0(compute):
    """`compute()` on rank 0 alone, its result sent to every rank (pickled); a UserError it
    raises is raised on every rank. For work that would otherwise be done N times over, such
    as listing ImageNet's 1.28 million files on a shared file system from every process."""
    if not active():
        return compute()
    message, failure = [None], None
    if is_main():
        try:
            message = [("result", compute())]
        except UserError as err:
            message = [("error", str(err))]
        except BaseException as err:  # noqa: BLE001 -- the others are waiting in this broadcast: tell them, then fail
            message, failure = [("failed", f"{type(err).__name__}: {err}")], err
    dist.broadcast_object_list(message, src=0)
    if failure is not None:
        raise failure
    kind, value = message[0]
    if kind == "error":
        raise UserError(value)
    if kind == "failed":
        raise RuntimeError(f"rank 0 failed ({value}); its log has the traceback")
    return value


def all_succeeded(succeeded):
    """True when every rank says it succeeded; a barrier too. A rank whose part failed still
    calls it, so that the others learn it and stop instead of waiting for it."""
    if not active():
        return succeeded
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    return int(all_reduce_sum_(torch.tensor(0 if succeeded else 1, device=device))) == 0


def sum_over_ranks_(tensors, loader):
    """Sum each of `tensors` in place over the ranks when each went through its own block of `loader`."""
    if shares_batches(loader):
        for tensor in tensors:
            all_reduce_sum_(tensor)
    return tensors


def share_of_global_batch(count, device, total=None):
    """(start, stop, total): where this rank's `count` images sit in the global batch they were split from.

    `total`, the global batch's size, when the loader knows it; else it is counted over the
    ranks (a collective and a wait for the device: an ordinary DataLoader's batches only).
    """
    if not active():
        return 0, count, count
    if total is None:
        total = int(all_reduce_sum_(torch.tensor(count, device=device)))
    start, stop = rank_share(total, rank(), world_size())
    return start, stop, total


def all_reduce_sum_(tensor):
    """Sum `tensor` over the ranks, in place; returns it."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_cat(tensor):
    """Every rank's `tensor` (the same shape but for the first dimension) concatenated in rank order, on every rank."""
    if not active():
        return tensor
    sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([len(tensor)], device=tensor.device))
    sizes = [int(s) for s in sizes]
    padded = torch.zeros((max(sizes), *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: len(tensor)] = tensor
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])


# ---------------------------------------------------------------- loaders


def _ours(loader):
    return hasattr(loader, "split_for_rank") and hasattr(loader, "batch_block")


def split_batches(loader):
    """The loader for training: this rank's part of every global batch (itself with one process).

    An ordinary DataLoader is returned as it is: give it a DistributedSampler yourself.
    """
    if not active() or not _ours(loader):
        return loader
    return loader.split_for_rank(rank(), world_size())


def shares_batches(loader):
    """True when `batch_block` hands each rank a part of this loader (so that results must be summed or gathered)."""
    return active() and _ours(loader)


def batch_block(loader):
    """The loader for sums and inference: this rank's contiguous block of the loader's batches.

    An ordinary DataLoader is returned as it is: every rank goes through all of it.
    """
    if not shares_batches(loader):
        return loader
    start, stop = rank_share(len(loader), rank(), world_size())
    return loader.batch_block(start, stop)


# ---------------------------------------------------------------- the model

_wrapped = weakref.WeakKeyDictionary()  # model -> (its parameters' ids, its DistributedDataParallel)


def wrap(model):
    """The model to train with: DistributedDataParallel over it under several processes, else itself.

    One wrapper per model, rebuilt when its parameters change (pruning re-parametrises the
    weights, boundary expanding grows the classifier). The pruning masks are left out of the
    buffers DDP broadcasts before every forward pass: every rank holds the same mask (loaded
    from one file, or computed from the same weights), and a mask changes only between wraps.
    """
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    params = tuple(id(p) for p in model.parameters())
    cached = _wrapped.get(model)
    if cached is None or cached[0] != params:
        device = next(model.parameters()).device
        masks = [name for name, _ in model.named_buffers() if name.endswith("weight_mask")]
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, masks)
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        _wrapped[model] = cached = (params, ddp)
    return cached[1]
