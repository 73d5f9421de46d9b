"""IU, influence unlearning: one WoodFisher inverse-Hessian-vector step (original `wfisher`).

With g_F, g_R the summed per-sample gradients over the forget and retain sets (eval
mode, dataset order) and nF, nR their sizes:
    v = g_F / (nF + nR) - g_R * nF / ((nF + nR) * nR)
then the WoodFisher recursion over the per-sample retain gradients g_0, g_1, ... with
damping N:  k = v, o = g_0; for each next g: t = o.g; k -= (k.g / (N + t)) o;
o -= (t / (N + t)) o; stopping once N + 2 samples have been used. Finally
theta += alpha * k.

Per-sample gradients come in chunks from `torch.func` (vmap of grad of a functional
call), not from one backward pass per sample, and are streamed: the recursion folds each
chunk in and drops it before the next is computed, so memory is set by --iu_chunk_size
(as the original, which held one gradient at a time), not by --batch_size.
"""

import logging
import os

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap
from tqdm import tqdm

import distributed
from dataset import in_order, num_samples
from options import Option

from .method import Method

log = logging.getLogger("unlearn_sparse")

MAX_CHUNK = 32  # beyond this the batched call stops paying on CPU (bench/iu_grads.py)
MEMORY_SHARE = 0.25  # of the free memory one chunk of per-sample gradients may take
DEFAULT_DAMPING = 1000  # the original's hard-coded N


def free_memory_bytes(device):
    """Free memory on the device: CUDA's own count, else the machine's available RAM."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:  # Linux: MemAvailable counts reclaimable page cache, unlike the free pages
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**30


def default_chunk_size(model):
    """Samples per vmapped gradient call: fits a share of the free memory, at most MAX_CHUNK.

    Each sample's gradient is as large as the model, plus about as much again for the
    activations of the backward pass.
    """
    params = list(model.parameters())
    per_sample = 2 * 4 * sum(p.numel() for p in params)
    budget = MEMORY_SHARE * free_memory_bytes(params[0].device)
    max_chunk = 4 * MAX_CHUNK if params[0].device.type == "cuda" else MAX_CHUNK
    return int(max(1, min(max_chunk, budget // per_sample)))


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def summed_gradient(model, loader, chunk_size=None):
    """Sum over the loader's samples of the per-sample loss gradients (eval mode), flat.

    Each batch goes through the backward pass in parts of `chunk_size` samples, so that its
    activations take no more memory than one chunk of per-sample gradients.
    """
    model.eval()
    params = list(model.parameters())
    device = params[0].device
    chunk_size = chunk_size or default_chunk_size(model)
    total = torch.zeros(sum(p.numel() for p in params), device=device)
    for images, labels in distributed.batch_block(loader):  # under torchrun each rank sums a block, then all of them
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        for part in range(0, len(labels), chunk_size):
            loss = F.cross_entropy(model(images[part : part + chunk_size]), labels[part : part + chunk_size], reduction="sum")
            total += flat(torch.autograd.grad(loss, params))
    return distributed.sum_over_ranks_([total], loader)[0]


def per_sample_gradient_chunks(model, images, labels, chunk_size=None):
    """(chunk, P) matrices of per-sample loss gradients (eval mode), one chunk at a time.

    Only one chunk is alive at a time: each is handed on and dropped before the next is
    computed, so memory is set by `chunk_size`, never by how many samples there are.
    """
    model.eval()
    names = [name for name, _ in model.named_parameters()]
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def loss_of(param_values, image, label):
        logits = functional_call(model, ({**param_values}, buffers), (image[None],))
        return F.cross_entropy(logits, label[None])

    sample_grad = vmap(grad(loss_of), in_dims=(None, 0, 0))
    chunk_size = chunk_size or default_chunk_size(model)
    for start in range(0, len(labels), chunk_size):
        stop = min(start + chunk_size, len(labels))
        g = sample_grad(params, images[start:stop], labels[start:stop])
        rows = torch.cat([g.pop(name).reshape(stop - start, -1) for name in names], dim=1)
        del g
        yield rows
        del rows  # before the next chunk is computed


def per_sample_gradients(model, images, labels, chunk_size=None):
    """The whole (n, P) matrix of per-sample gradients: for tests and benchmarks; IU streams them."""
    return torch.cat(list(per_sample_gradient_chunks(model, images, labels, chunk_size)))


def woodfisher(v, gradient_chunks, damping):
    """The WoodFisher recursion of the original over a stream of (chunk, P) gradient matrices."""
    k = v.clone()
    o = None
    used = 0
    for chunk in gradient_chunks:
        for g in chunk:
            if o is None:
                o = g.clone()
            else:
                t = torch.dot(o, g)
                k -= (torch.dot(k, g) / (damping + t)) * o
                o -= (t / (damping + t)) * o
            used += 1
            if used >= damping + 2:
                return k
        del chunk, g  # a row is a view that keeps its chunk alive: drop both before the next chunk
    return k


def retain_gradient_stream(model, loader, chunk_size=None, desc="IU per-sample gradients"):
    """(chunk, P) per-sample gradient matrices over the loader's samples in order, one chunk alive at a time."""
    device = next(model.parameters()).device
    for images, labels in tqdm(loader, desc=desc, leave=False, disable=distributed.no_progress_bar()):
        yield from per_sample_gradient_chunks(model, images.to(device, non_blocking=True), labels.to(device, non_blocking=True), chunk_size)


@torch.no_grad()
def add_flat_(model, vector):
    start = 0
    for p in model.parameters():
        p.add_(vector[start : start + p.numel()].view_as(p))
        start += p.numel()


def wfisher_direction(data_loaders, model, args):
    """The WoodFisher vector k; returns apply(model, alpha), the step theta += alpha * k."""
    damping = args.iu_damping
    retain, forget = data_loaders["retain"], data_loaders["forget"]
    n_forget, n_retain = num_samples(forget), num_samples(retain)
    g_forget = summed_gradient(model, in_order(forget), args.iu_chunk_size)
    g_retain = summed_gradient(model, in_order(retain), args.iu_chunk_size)
    v = g_forget / (n_forget + n_retain) - g_retain * n_forget / ((n_forget + n_retain) * n_retain)
    # The recursion reads only the first N + 2 retain samples.
    first = in_order(retain, limit=damping + 2)
    k = woodfisher(v, retain_gradient_stream(model, first, args.iu_chunk_size), damping)

    def apply(model, alpha):
        add_flat_(model, alpha * k)
        return model

    return apply


def wfisher(data_loaders, model, criterion, args):
    return wfisher_direction(data_loaders, model, args)(model, args.alpha)


IU_CHUNK_SIZE = Option(
    "iu_chunk_size",
    None,
    "IU and fisher: samples per batched per-sample-gradient call (default: a quarter of the free memory, at most 32 on CPU, 128 on GPU)",
    type=int,
    check=lambda v: None if v is None or v >= 1 else f"--iu_chunk_size {v}: must be at least 1",
)
METHOD = Method(
    "wfisher",
    wfisher,
    "IU",
    "IU: influence unlearning, one WoodFisher step of size alpha",
    iterative=False,
    direction=wfisher_direction,
    alpha=3.0,  # works on the bundled data; the literature uses about 1-20 (docs/methods.md)
    options=(
        Option(
            "iu_damping",
            DEFAULT_DAMPING,
            "IU: damping N of the WoodFisher recursion, which reads N + 2 retain samples",
            type=int,
            check=lambda v: None if v >= 1 else f"--iu_damping {v}: must be at least 1",
        ),
        IU_CHUNK_SIZE,
    ),
)
