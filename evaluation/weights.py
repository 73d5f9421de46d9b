"""How an unlearning moved the weights: their l1 norm before and after, and the share that moved towards zero.

Measured on the effective weights (a pruned layer's weight_orig times its mask) of every
trainable parameter, the ones an l1 penalty (l1-sparse) acts on; batch-norm statistics
and masks are buffers and left out.
"""

import pruner


def effective_parameters(model, state_dict):
    """{parameter name: tensor} of `state_dict` (dense or pruned), under the model's parameter names."""
    names = [name[: -len("_orig")] if name.endswith("weight_orig") else name for name, _ in model.named_parameters()]
    dense = pruner.dense_state_dict(state_dict)
    return {name: dense[name].detach().float().cpu() for name in names}


def weight_change(model, original_state):
    """{"l1_before", "l1_after", "l1_ratio", "towards_zero", "weights"}: towards_zero is the share of
    the weights non-zero before whose magnitude is smaller after."""
    before = effective_parameters(model, original_state)
    after = effective_parameters(model, model.state_dict())
    l1_before = sum(float(t.abs().sum()) for t in before.values())
    l1_after = sum(float(t.abs().sum()) for t in after.values())
    nonzero = shrunk = 0
    for name, old in before.items():
        live = old != 0
        nonzero += int(live.sum())
        shrunk += int((after[name].abs() < old.abs())[live].sum())
    return {
        "l1_before": l1_before,
        "l1_after": l1_after,
        "l1_ratio": l1_after / l1_before if l1_before else float("nan"),
        "towards_zero": shrunk / nonzero if nonzero else float("nan"),
        "weights": nonzero,
    }
