"""Unstructured pruning of conv weights; masks are data.

A mask is `{"<module>.weight_mask": 0/1 tensor}` over the model's conv layers (the
keys the original's `extract_mask` produced from a state dict). Pruning methods are
functions `(model, mask, amount) -> new mask` that remove `amount` of the weights
still alive. A mask is put on a model with `torch.nn.utils.prune`, so state dicts
carry `weight_orig` / `weight_mask` exactly as the original code wrote them. On disk a
mask is bool (`compact_state_dict`); in a model it is the float buffer `prune` keeps.

The original's helper names are kept (`pruning_model`, `pruning_model_random`,
`prune_model_custom`, `remove_prune`, `extract_mask`, `check_sparsity`).
"""

import copy
import logging
from collections import OrderedDict

import torch
import torch.nn.utils.prune as prune
from torch import nn

from errors import UserError

log = logging.getLogger("unlearn_sparse")

MASK_SUFFIX = ".weight_mask"


def conv_layers(model):
    """(name, module) of every conv layer: the layers that are pruned."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def conv_weight(module):
    """The effective (masked) weight of a conv layer, pruned or not."""
    return module.weight


def clone_model(model):
    """A deep copy of a model, pruned or not.

    A pruned layer's `weight` is recomputed from `weight_orig * weight_mask` before every
    forward; after a forward with gradients it is a non-leaf tensor, which deepcopy refuses.
    Detaching it first is harmless: the next forward recomputes it.
    """
    for _, m in conv_layers(model):
        if prune.is_pruned(m):
            m.weight = (m.weight_orig * m.weight_mask).detach()
    return copy.deepcopy(model)


def full_mask(model):
    return {name + MASK_SUFFIX: torch.ones_like(m.weight) for name, m in conv_layers(model)}


def current_mask(model):
    """The mask on the model now (all ones for layers without one)."""
    mask = {}
    for name, m in conv_layers(model):
        buf = getattr(m, "weight_mask", None)
        mask[name + MASK_SUFFIX] = buf.detach().clone() if buf is not None else torch.ones_like(m.weight)
    return mask


def _global_prune(model, mask, amount, scores, n_prune=None):
    """Zero `amount` (or `n_prune`) of the surviving weights with the lowest scores, globally."""
    mask = mask if mask is not None else current_mask(model)
    keys = [name + MASK_SUFFIX for name, _ in conv_layers(model)]
    flat_scores = torch.cat([scores[k].flatten() for k in keys])
    flat_mask = torch.cat([mask[k].flatten().to(flat_scores.device) for k in keys])
    alive = torch.nonzero(flat_mask).flatten()
    if n_prune is None:
        n_prune = round(amount * len(alive))
    new_flat = flat_mask.clone()
    if n_prune > 0:
        # The n_prune lowest scores: below the k-th value, then ties in index order
        # (a selection, not a sort: SynFlow calls this every round on every weight).
        alive_scores = flat_scores[alive]
        threshold = torch.kthvalue(alive_scores.cpu(), n_prune).values.to(alive_scores.device)
        below = torch.nonzero(alive_scores < threshold).flatten()
        ties = torch.nonzero(alive_scores == threshold).flatten()
        chosen = torch.cat([below, ties[: n_prune - len(below)]])
        new_flat[alive[chosen]] = 0
    new_mask, start = {}, 0
    for k in keys:
        numel = mask[k].numel()
        new_mask[k] = new_flat[start : start + numel].view_as(mask[k]).to(mask[k].device)
        start += numel
    return new_mask


def magnitude_mask(model, mask=None, amount=0.2, generator=None):
    """Global L1 (magnitude) pruning: remove `amount` of the live conv weights."""
    scores = {name + MASK_SUFFIX: conv_weight(m).detach().abs() for name, m in conv_layers(model)}
    return _global_prune(model, mask, amount, scores)


def random_mask(model, mask=None, amount=0.2, generator=None):
    """Random pruning: remove `amount` of the live conv weights, chosen uniformly."""
    scores = {name + MASK_SUFFIX: torch.rand(m.weight.shape, generator=generator) for name, m in conv_layers(model)}
    return _global_prune(model, mask, amount, scores)


class _SynFlowNet:
    """A float64 copy of a model in eval mode with |parameters| and |buffers|, for scoring.

    The model itself is never touched.
    """

    def __init__(self, model, input_shape):
        self.net = clone_model(model).double().eval()
        remove_prune(self.net)
        with torch.no_grad():
            for tensor in self.net.state_dict().values():
                if tensor.is_floating_point():
                    tensor.abs_()
        self.convs = conv_layers(self.net)
        self.abs_weights = {name + MASK_SUFFIX: m.weight.detach().clone() for name, m in self.convs}
        device = next(self.net.parameters()).device
        self.ones = torch.ones(1, *input_shape, dtype=torch.float64, device=device)

    def scores(self, mask):
        """(|theta * dR/dtheta| per conv weight, R) with `mask` applied."""
        with torch.no_grad():
            for name, m in self.convs:
                key = name + MASK_SUFFIX
                m.weight.copy_(self.abs_weights[key] * mask[key].to(m.weight.device, torch.float64))
        self.net.zero_grad()
        objective = self.net(self.ones).sum()
        objective.backward()
        scores = {name + MASK_SUFFIX: (m.weight.grad * m.weight).detach().abs() for name, m in self.convs}
        return scores, objective.detach().item()


def synflow_mask(model, mask=None, amount=0.2, rounds=100, input_shape=(3, 32, 32)):
    """SynFlow (Tanaka et al., 2020): prune `amount` of the conv weights without data.

    Scores |theta * dR/dtheta|, R the summed output of the network with absolute weights
    fed an all-ones input (eval mode, float64), are recomputed in each of `rounds`
    rounds while the kept share falls exponentially, (1 - amount) ** (k / rounds).
    """
    mask = mask if mask is not None else full_mask(model)
    total = sum(v.numel() for v in mask.values())
    net = _SynFlowNet(model, input_shape)
    for k in range(1, rounds + 1):
        scores, _ = net.scores(mask)
        keep = round(total * (1 - amount) ** (k / rounds))
        alive = int(sum(int(v.sum()) for v in mask.values()))
        mask = _global_prune(model, mask, None, scores, n_prune=max(alive - keep, 0))
    return mask


def synflow_objective(model, mask, input_shape=(3, 32, 32)):
    """The SynFlow objective R of the masked network: 0 means no path from input to output."""
    return _SynFlowNet(model, input_shape).scores(mask)[1]


PRUNE_METHODS = {"l1": magnitude_mask, "random": random_mask, "synflow": synflow_mask}


# ---------------------------------------------------------------- putting masks on models


def apply_mask(model, mask):
    """Put `mask` on the model's conv layers (replacing any mask already there).

    The current effective weights are kept: a layer that already had a mask keeps
    its masked values as the new `weight_orig`.
    """
    check_mask_fits(model, mask)
    remove_prune(model)
    for name, m in conv_layers(model):
        prune.custom_from_mask(m, "weight", mask[name + MASK_SUFFIX].to(m.weight.device, m.weight.dtype))


def check_mask_fits(model, mask):
    """UserError unless `mask` has exactly the model's conv layers with their shapes."""
    expected = {name + MASK_SUFFIX: tuple(m.weight.shape) for name, m in conv_layers(model)}
    got = {k: tuple(v.shape) for k, v in mask.items()}
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing or extra:
        detail = f"missing {missing[:3]}" if missing else f"unknown {extra[:3]}"
        raise UserError(f"the mask does not fit this architecture ({detail}); was it made for another --arch?")
    wrong = [k for k in expected if expected[k] != got[k]]
    if wrong:
        k = wrong[0]
        raise UserError(
            f"the mask does not fit this architecture ({k} has shape {got[k]}, the model {expected[k]}); was it made for another --arch?"
        )


def is_pruned(model):
    return any(prune.is_pruned(m) for _, m in conv_layers(model))


def remove_prune(model):
    """Make the masks permanent: `weight = weight_orig * mask`, plain `weight` keys again."""
    for _, m in conv_layers(model):
        if prune.is_pruned(m):
            prune.remove(m, "weight")


def dense_state_dict(state_dict):
    """A pruned state dict with `<name>.weight = weight_orig * weight_mask`, masks dropped."""
    dense = {}
    for key, value in state_dict.items():
        if key.endswith("weight_orig"):
            base = key[: -len("_orig")]
            dense[base] = value * state_dict[base + "_mask"].to(value.dtype)
        elif not key.endswith(MASK_SUFFIX):
            dense[key] = value
    return dense


def check_state_dict_fits(model, state_dict):
    """UserError unless the (dense or pruned) state dict has the model's keys and shapes."""
    mask = extract_mask(state_dict)
    if mask:
        check_mask_fits(model, mask)
    expected = {k: tuple(v.shape) for k, v in dense_state_dict(model.state_dict()).items()}
    got = {k: tuple(v.shape) for k, v in dense_state_dict(state_dict).items()}
    if expected != got:
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        wrong = [k for k in expected if k in got and expected[k] != got[k]]
        detail = f"missing {missing[:3]}" if missing else f"unknown {extra[:3]}" if extra else f"{wrong[0]} has shape {got[wrong[0]]}"
        raise UserError(f"the checkpoint does not fit this architecture ({detail}); was it made for another --arch or dataset?")


def load_pruned_model(model, state_dict):
    """Give the model the state dict's mask (none for a dense one) and its exact weights.

    A pruned state dict loads as is (`weight_orig` too, so a resumed run continues
    bit for bit); a dense one removes any mask the model had.
    """
    check_state_dict_fits(model, state_dict)
    mask = extract_mask(state_dict)
    if mask:
        apply_mask(model, mask)
    else:
        remove_prune(model)
    model.load_state_dict(state_dict, strict=True)


def load_weights_under_mask(model, state_dict):
    """Load a (dense or pruned) state dict's effective weights, keeping the model's own mask.

    How the original rewinds: a pruned state dict gives `weight_orig * weight_mask`.
    """
    check_state_dict_fits(model, state_dict)
    mask = current_mask(model) if is_pruned(model) else None
    remove_prune(model)
    model.load_state_dict(dense_state_dict(state_dict), strict=True)
    if mask is not None:
        apply_mask(model, mask)


# ---------------------------------------------------------------- sparsity


def sparsity(mask_or_model):
    """Percent of conv weights that are pruned (0 for a dense model)."""
    mask = mask_or_model if isinstance(mask_or_model, dict) else current_mask(mask_or_model)
    total = sum(v.numel() for v in mask.values())
    zeros = sum(int((v == 0).sum()) for v in mask.values())
    return 100.0 * zeros / total if total else 0.0


def zero_weight_share(model):
    """Percent of conv weights that are exactly zero (as seen by the forward pass)."""
    total = zeros = 0
    for _, m in conv_layers(model):
        total += m.weight.numel()
        zeros += int((m.weight == 0).sum())
    return 100.0 * zeros / total if total else 0.0


# ---------------------------------------------------------------- the original's helpers


def pruning_model(model, px):
    """Global L1 pruning of `px` of the live conv weights, applied to the model."""
    apply_mask(model, magnitude_mask(model, current_mask(model), px))


def pruning_model_random(model, px):
    """Random pruning of `px` of the live conv weights, applied to the model."""
    apply_mask(model, random_mask(model, current_mask(model), px))


def prune_model_custom(model, mask_dict):
    """Apply a mask dict (keys `<layer>.weight_mask`) to the model's conv layers."""
    apply_mask(model, mask_dict)


def extract_mask(model_dict):
    """The `*weight_mask` entries of a state dict, as float 0/1 whether stored as float (the
    original's files) or as bool (ours, `compact_state_dict`)."""
    masks = {k: v for k, v in model_dict.items() if k.endswith(MASK_SUFFIX)}
    return {k: v.detach().clone().float() if v.dtype == torch.bool else copy.deepcopy(v) for k, v in masks.items()}


def compact_state_dict(state_dict):
    """The state dict as a checkpoint stores it: every `*weight_mask` as bool, a quarter of
    float32's bytes, all else unchanged (the same keys, the same order).

    The original's code loads it as it loads its own files: `load_state_dict` copies a bool
    tensor into its float mask buffer, and `prune.CustomFromMask` casts the mask it is given.
    """
    compact = OrderedDict((k, v.bool() if k.endswith(MASK_SUFFIX) else v) for k, v in state_dict.items())
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        compact._metadata = metadata  # the modules' state-dict versions, as model.state_dict() gives them
    return compact


def check_sparsity(model):
    """Log and return the remaining-weight ratio in percent, as the original did."""
    zero = zero_weight_share(model)
    log.info("conv sparsity %.2f%% (remaining weights %.2f%%)", zero, 100 - zero)
    return 100.0 - zero
