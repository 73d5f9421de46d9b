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

import torch

from dataset import in_order, num_samples
from options import Option

from .gradients import retain_gradient_stream, summed_gradient
from .method import Method

log = logging.getLogger("unlearn_sparse")

DEFAULT_DAMPING = 1000  # the original's hard-coded N


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
