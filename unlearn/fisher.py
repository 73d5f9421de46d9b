"""FF, Fisher forgetting (Golatkar et al., 2020), as in the original `fisher_new`; and `fisher`.

1. Over the retain set in batches of 32 (eval mode, training augmentation, dataset
   order), for every class y accumulate mean_batch(p_y) * grad(CE(batch, all targets
   y))^2 per parameter; divide by the number of batches: F.
2. Per parameter tensor: var = clamp(1 / (F + 1e-8), max 1e3, or 1e2 for the
   classifier); var *= alpha; tensors of 2+ dims take the mean of var over dim 1;
   under class-wise forgetting the forgotten class's classifier row gets mean 0 and
   var 1e-4; var *= 10 for the classifier and 1-D tensors.
3. theta = mean + sqrt(var) * N(0, 1).

`fisher`, the original's older Fisher forgetting: F = the mean over the retain set of
(d log p_y / d theta + 1e-8)^2 per sample (eval mode); theta += min(sqrt(alpha / F),
1e-3) * N(0, 1), ten times that for tensors whose last dimension is the number of
classes (the classifier's bias).
"""

import logging

import torch
from torch import nn

from dataset import in_order
from errors import UserError
from options import Option

from .gradients import fisher_diagonal, grouped_layers, per_sample_fisher
from .method import Method
from .wfisher import IU_CHUNK_SIZE

log = logging.getLogger("unlearn_sparse")

FISHER_BATCH_SIZE = 32


def classifier_parameters(model):
    """The parameters of the last linear layer (the classifier)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return {id(p) for p in linears[-1].parameters()} if linears else set()


def noise_mean_var(param, fisher, alpha, is_classifier, forget_class=None):
    """Mean and variance of the Gaussian that replaces `param` (docs/algorithms.md §6)."""
    var = (1.0 / (fisher + 1e-8)).clamp(max=1e2 if is_classifier else 1e3)
    var = alpha * var
    if param.ndim > 1:
        var = var.mean(dim=1, keepdim=True).expand_as(param).clone()
    mean = param.detach().clone()
    if is_classifier and forget_class is not None:
        mean[forget_class] = 0
        var[forget_class] = 1e-4
    if is_classifier or param.ndim == 1:
        var = var * 10
    return mean, var


@torch.no_grad()
def _add_noise(model, fisher, alpha, forget_class):
    classifier = classifier_parameters(model)
    for p, f in zip(model.parameters(), fisher):
        mean, var = noise_mean_var(p, f, alpha, id(p) in classifier, forget_class)
        p.copy_(mean + var.sqrt() * torch.randn_like(p))


def fisher_new_direction(data_loaders, model, args):
    """The retain set's Fisher diagonal; returns apply(model, alpha), the noise at that alpha."""
    loader = in_order(data_loaders["retain"], batch_size=FISHER_BATCH_SIZE)
    method = args.ff_method
    if method == "grouped" and grouped_layers(model.eval()) is None:
        raise UserError("--ff_method grouped: this model has layers other than Conv2d, BatchNorm2d and Linear; use --ff_method loop")
    with torch.random.fork_rng(devices=[]):  # an ordinary DataLoader draws from the CPU RNG; the noise must not depend on it
        fisher = fisher_diagonal(model, loader, args.num_classes, method=None if method == "auto" else method)

    def apply(model, alpha):
        _add_noise(model, fisher, alpha, args.forget_class)
        return model

    return apply


def fisher_new(data_loaders, model, criterion, args):
    return fisher_new_direction(data_loaders, model, args)(model, args.alpha)


OLD_FISHER_MAX_STD = 1e-3


def fisher_direction(data_loaders, model, args):
    """The per-sample Fisher of the retain set; returns apply(model, alpha), the noise at that alpha."""
    with torch.random.fork_rng(devices=[]):  # as in fisher_new: the noise does not depend on the loader
        information = per_sample_fisher(model, in_order(data_loaders["retain"]), args.iu_chunk_size)

    @torch.no_grad()
    def apply(model, alpha):
        start = 0
        for p in model.parameters():
            f = information[start : start + p.numel()].view_as(p)
            start += p.numel()
            noise = torch.sqrt(alpha / f).clamp(max=OLD_FISHER_MAX_STD) * torch.empty_like(p).normal_(0, 1)
            if p.shape[-1] == args.num_classes:
                noise = noise * 10
            p.add_(noise)
        return model

    return apply


def fisher(data_loaders, model, criterion, args):
    """The original's older Fisher forgetting (`--unlearn fisher`)."""
    return fisher_direction(data_loaders, model, args)(model, args.alpha)


ORIGINAL_ALPHA = 0.2  # the original's --alpha default, which its `fisher` ran with

FISHER_NEW_METHOD = Method(
    "fisher_new",
    fisher_new,
    "FF",
    "FF: Fisher forgetting, noise scaled by alpha / Fisher of the retain set",
    iterative=False,
    direction=fisher_new_direction,
    alpha=1e-7,  # works on the bundled data; the literature uses about 1e-9 to 3e-6 (docs/methods.md)
    options=(
        Option(
            "ff_method",
            "auto",
            "FF: how the per-class gradients are computed, all equal up to rounding "
            "(measured: the fastest after one timed batch each; auto: measured on CUDA, loop elsewhere)",
            type=str,
            choices=("auto", "measured", "loop", "batched", "grouped"),
        ),
    ),
)
FISHER_METHOD = Method(
    "fisher",
    fisher,
    "fisher",
    "the original's older Fisher forgetting: noise of std min(sqrt(alpha / F), 1e-3), per-sample Fisher",
    iterative=False,
    direction=fisher_direction,
    alpha=ORIGINAL_ALPHA,
    options=(IU_CHUNK_SIZE,),
)
