"""SalUn (Fan et al., ICLR 2024): RL that moves only the weights most salient for the forget set.

Saliency, as SalUn's `generate_mask.py`: the gradient of the forget set's loss with the
model in eval mode, summed over the forget set's batches; its absolute value is ranked
over all parameters at once (global, not per layer) and the top --salun_ratio of the
weights are trainable (1), the rest frozen (0). On a pruned model the ratio counts the
surviving weights, and a pruned weight is never salient. The mask is saved in --save_dir as
`with_<ratio>.pt` in SalUn's format (parameter name -> 0/1 tensor; a pruned layer's
`weight_orig` under its plain name `weight`); --mask_path FILE uses one made elsewhere.

The frozen weights stay exactly as loaded: their gradient is zeroed before every step,
and after it they are put back and their momentum cleared (SalUn's issue 32 / pull
request 33: weight decay otherwise moved them). On a pruned model the pruned weights stay
zero, as with every method.
"""

import time
from functools import partial

import torch
import torch.nn.functional as F

import distributed
from checkpoints import atomic_torch_save, load_checkpoint
from dataset import in_order
from errors import UserError
from options import Option
from paths import saliency_mask_path

from .method import Method
from .RL import random_label_training

DEFAULT_RATIO = 0.5


def saliency_key(parameter_name):
    """SalUn's key for a parameter: a pruned layer's `weight_orig` is its `weight`."""
    return parameter_name.removesuffix("_orig")


def saliency_mask(model, forget_loader, ratio):
    """{name: 0/1 uint8 tensor}: the `ratio` of the weights with the largest |summed forget gradient|.

    On a pruned model the ratio counts the surviving weights; a pruned one is never salient.
    """
    model.eval()
    named = [(saliency_key(name), p) for name, p in model.named_parameters()]
    device = named[0][1].device
    total = [torch.zeros_like(p) for _, p in named]
    for images, labels in distributed.batch_block(forget_loader):  # under torchrun: a block per rank, summed below
        loss = F.cross_entropy(model(images.to(device)), labels.to(device))
        for acc, grad in zip(total, torch.autograd.grad(loss, [p for _, p in named])):
            acc.add_(grad)
    distributed.sum_over_ranks_(total, forget_loader)
    buffers = dict(model.named_buffers())
    alive = torch.cat([(buffers.get(f"{name}_mask", torch.ones_like(p)) != 0).flatten() for name, p in named])
    scores = torch.cat([t.abs().flatten() for t in total]).masked_fill(~alive, -1.0)
    keep = torch.zeros(len(scores), dtype=torch.uint8, device=device)
    # The top `ratio` (SalUn: int(n * ratio) of them), ties in parameter order.
    keep[torch.argsort(scores, descending=True, stable=True)[: int(int(alive.sum()) * ratio)]] = 1
    return {name: part.view_as(p) for (name, p), part in zip(named, keep.split([p.numel() for _, p in named]))}


def check_saliency_mask(model, saliency, path):
    """UserError unless `saliency` has a 0/1 tensor of the right shape for every parameter of `model`."""
    if not isinstance(saliency, dict) or not all(isinstance(v, torch.Tensor) for v in saliency.values()):
        raise UserError(
            f"--mask_path {path}: not a saliency mask (a dict of parameter name -> 0/1 tensor, as SalUn's generate_mask.py writes)"
        )
    expected = {saliency_key(name): tuple(p.shape) for name, p in model.named_parameters()}
    missing, extra = sorted(set(expected) - set(saliency)), sorted(set(saliency) - set(expected))
    wrong = [k for k in expected if k in saliency and tuple(saliency[k].shape) != expected[k]]
    if missing or extra or wrong:
        detail = (
            f"missing {missing[:3]}"
            if missing
            else f"unknown {extra[:3]}"
            if extra
            else f"{wrong[0]} has shape {tuple(saliency[wrong[0]].shape)}"
        )
        raise UserError(
            f"--mask_path {path}: the saliency mask does not fit this model ({detail}); was it made for another --arch or dataset?"
        )
    if any(bool(((v != 0) & (v != 1)).any()) for v in saliency.values()):
        raise UserError(f"--mask_path {path}: a saliency mask holds only 0 and 1")


def load_saliency_mask(path, model):
    saliency = load_checkpoint(path, "cpu", what="--mask_path saliency mask")
    check_saliency_mask(model, saliency, path)
    return saliency


def check_mask_path(model, args):
    """--mask_path, when given, is a saliency mask that fits the model (one line before any work if not)."""
    if args.mask_path:
        load_saliency_mask(args.mask_path, model)


class FrozenOutsideMask(torch.optim.SGD):
    """SGD that moves only the weights where `keep` is 1; the others stay exactly as they were."""

    def __init__(self, params, keep, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.keep = {p: m.to(p.device, p.dtype) for p, m in keep.items()}
        self.frozen = {p: p.detach().clone() for p in self.keep}

    @torch.no_grad()
    def step(self, closure=None):
        for p, m in self.keep.items():
            if p.grad is not None:
                p.grad.mul_(m)
        loss = super().step(closure)
        for p, m in self.keep.items():
            p.copy_(torch.where(m.bool(), p, self.frozen[p]))  # weight decay moved them: put them back
            buffer = self.state.get(p, {}).get("momentum_buffer")
            if buffer is not None:
                buffer.mul_(m)
        return loss


def SalUn(data_loaders, model, criterion, args):
    ratio = args.salun_ratio
    start = time.perf_counter()
    if args.mask_path:
        saliency = load_saliency_mask(args.mask_path, model)
    else:
        saliency = saliency_mask(model, in_order(data_loaders["forget"]), ratio)
        if getattr(args, "save_dir", None):  # a method called from code may have nowhere to write
            atomic_torch_save({k: v.cpu() for k, v in saliency.items()}, saliency_mask_path(args.save_dir, ratio))
    # SalUn's code makes the mask in a script of its own: its time is reported beside the RTE (which includes it).
    args.saliency_mask_seconds = time.perf_counter() - start
    keep = {p: saliency[saliency_key(name)] for name, p in model.named_parameters()}
    frozen_outside = partial(FrozenOutsideMask, keep=keep)
    return random_label_training(data_loaders, model, args, "SalUn", optimizer_class=frozen_outside)


METHOD = Method(
    "SalUn",
    SalUn,
    "SalUn",
    "RL moving only the --salun_ratio most salient weights for the forget set (Fan et al., 2024)",
    iterative=True,
    options=(
        Option(
            "salun_ratio",
            DEFAULT_RATIO,
            "SalUn: share of all weights it may move (the most salient)",
            check=lambda v: None if 0 < v <= 1 else f"--salun_ratio {v}: the share of weights SalUn may move must be in (0, 1]",
        ),
        Option("mask_path", None, "SalUn: a saliency mask made elsewhere (SalUn's format) instead of computing one", type=str),
    ),
    check_inputs=check_mask_path,
    reports=("saliency_mask_seconds",),  # SalUn's code makes the mask in a script of its own: its time apart
)
