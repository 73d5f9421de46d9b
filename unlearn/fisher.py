"""FF, Fisher forgetting (Golatkar et al., 2020), as in the original `fisher_new`.

1. Over the retain set in batches of 32 (eval mode, training augmentation, dataset
   order), for every class y accumulate mean_batch(p_y) * grad(CE(batch, all targets
   y))^2 per parameter; divide by the number of batches: F.
2. Per parameter tensor: var = clamp(1 / (F + 1e-8), max 1e3, or 1e2 for the
   classifier); var *= alpha; tensors of 2+ dims take the mean of var over dim 1;
   under class-wise forgetting the forgotten class's classifier row gets mean 0 and
   var 1e-4; var *= 10 for the classifier and 1-D tensors.
3. theta = mean + sqrt(var) * N(0, 1).
"""

import logging

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

log = logging.getLogger("unlearn_sparse")

FISHER_BATCH_SIZE = 32


def classifier_parameters(model):
    """The parameters of the last linear layer (the classifier)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return {id(p) for p in linears[-1].parameters()} if linears else set()


def fisher_diagonal(model, loader, num_classes, batched=None):
    """Per parameter, the class-weighted squared gradients averaged over batches.

    The `num_classes` backward passes of a batch run one by one, or batched through
    `is_grads_batched` (vmap over the backward pass). Batching pays on a GPU, not on a
    few CPU cores (measured 0.76x on 2), so `batched=None` batches on CUDA only.
    """
    model.eval()
    params = list(model.parameters())
    device = params[0].device
    if batched is None:
        batched = device.type == "cuda"
    fisher = [torch.zeros_like(p) for p in params]
    batches = 0
    for images, _ in tqdm(loader, desc="FF Fisher", leave=False, disable=None):
        logits = model(images)
        prob = F.softmax(logits, dim=-1).detach()
        weights = prob.mean(dim=0)  # mean_batch(p_y) for every class y
        if batched:
            _accumulate_batched(fisher, params, logits, weights, num_classes)
        else:
            for y in range(num_classes):
                target = torch.full((len(images),), y, dtype=torch.long, device=images.device)
                grads = torch.autograd.grad(F.cross_entropy(logits, target), params, retain_graph=y < num_classes - 1, allow_unused=True)
                for acc, g in zip(fisher, grads):
                    if g is not None:
                        acc.add_(weights[y] * g.pow(2))
        batches += 1
    return [f / max(batches, 1) for f in fisher]


def _accumulate_batched(fisher, params, logits, weights, num_classes, budget_bytes=512 * 2**20):
    """The per-class backward passes of one batch, several classes per (vmapped) call."""
    # CE(logits, all targets y) = logsumexp(logits) - mean(logits[:, y]), for every y at once.
    losses = (torch.logsumexp(logits, dim=1)[:, None] - logits).mean(dim=0)
    n_params = sum(p.numel() for p in params)
    per_call = max(1, min(num_classes, budget_bytes // (4 * n_params)))
    eye = torch.eye(num_classes, device=logits.device, dtype=logits.dtype)
    for start in range(0, num_classes, per_call):
        stop = min(start + per_call, num_classes)
        grads = torch.autograd.grad(losses, params, grad_outputs=eye[start:stop], is_grads_batched=True, retain_graph=stop < num_classes)
        w = weights[start:stop]
        for acc, g in zip(fisher, grads):
            acc.add_(torch.tensordot(w, g.pow(2), dims=1))


def noise_mean_var(param, fisher, alpha, is_classifier, forget_class=None):
    """Mean and variance of the Gaussian that replaces `param` (SPEC section 6)."""
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


def fisher_new(data_loaders, model, criterion, args):
    loader = data_loaders["retain"].in_order(batch_size=FISHER_BATCH_SIZE)
    fisher = fisher_diagonal(model, loader, args.num_classes)
    _add_noise(model, fisher, args.alpha, args.forget_class)
    return model
