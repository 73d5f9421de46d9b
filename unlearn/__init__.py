"""Unlearning methods: `get_unlearn_method(name)(data_loaders, model, criterion, args)`.

`data_loaders` maps "retain", "forget", "val", "test" to loaders (retain and forget
shuffled, with the training augmentation). Besides the command-line options, `args`
carries `num_classes` (the dataset's) and `forget_class` (the class forgotten whole,
or None). Each method changes `model` in place and returns it; a pruned model keeps
its mask throughout.
"""

import pruner

from .fisher import fisher_new
from .FT import FT
from .FT_prune import FT_prune
from .GA import GA
from .impl import check_finite, read_resume_point, run_unlearning, save_unlearn_checkpoint, unlearn_and_save
from .retrain import retrain
from .wfisher import wfisher

UNLEARN_METHODS = {
    "retrain": retrain,
    "FT": FT,
    "GA": GA,
    "fisher_new": fisher_new,
    "wfisher": wfisher,
    "FT_prune": FT_prune,
}

# The paper does not state alpha for these; the defaults work on the digits data (see README).
DEFAULT_ALPHA = {"fisher_new": 1e-7, "wfisher": 3.0, "FT_prune": 1e-3}

# Methods that start from the checkpoint's weights (retrain starts from a fresh initialisation).
FROM_TRAINED_WEIGHTS = {name for name in UNLEARN_METHODS if name != "retrain"}


__all__ = [
    "UNLEARN_METHODS",
    "DEFAULT_ALPHA",
    "FROM_TRAINED_WEIGHTS",
    "get_unlearn_method",
    "check_finite",
    "run_unlearning",
    "prepare_model",
    "save_unlearn_checkpoint",
    "unlearn_and_save",
    "read_resume_point",
    "outputs",
]


def get_unlearn_method(name):
    return UNLEARN_METHODS[name]


def outputs(method):
    """What an unlearning run of `method` writes in --save_dir (glob patterns)."""
    return (f"{method}checkpoint.pth.tar", f"{method}eval_result.pth.tar", f"{method}eval_result.json")


def prepare_model(model, state_dict, method):
    """Put the checkpoint's mask on `model`, and its weights unless `method` retrains.

    `model` is freshly initialised; retrain keeps that initialisation (with the mask).
    """
    pruner.check_state_dict_fits(model, state_dict)
    if method in FROM_TRAINED_WEIGHTS:
        pruner.load_pruned_model(model, state_dict)
    else:
        mask = pruner.extract_mask(state_dict)
        if mask:
            pruner.apply_mask(model, mask)
