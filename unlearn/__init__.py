"""Unlearning methods: `get_unlearn_method(name)(data_loaders, model, criterion, args)`.

`data_loaders` maps "retain", "forget", "val", "test" to loaders (retain and forget
shuffled, with the training augmentation): this project's TensorLoaders or ordinary
`torch.utils.data.DataLoader`s, as code built on the original passes them; the same
samples in the same order give the same result. Besides the command-line options,
`args` carries `num_classes` (the dataset's) and `forget_class` (the class forgotten
whole, or None). Each method changes `model` in place and returns it; a pruned model
keeps its mask throughout (FT_prune_bi prunes further, never revives a weight).
"""

import pruner

from .boundary_expanding import boundary_expanding
from .boundary_shrink import boundary_shrink
from .fisher import fisher, fisher_new
from .FT import FT, FT_l1
from .FT_prune import FT_prune
from .FT_prune_bi import FT_prune_bi
from .GA import GA, GA_l1
from .impl import check_finite, read_resume_point, run_unlearning, save_unlearn_checkpoint, unlearn_and_save
from .raw import raw
from .retrain import retrain
from .retrain_ls import retrain_ls
from .retrain_sam import retrain_sam
from .RL import RL
from .SalUn import SalUn
from .SCRUB import SCRUB, SCRUB_EPOCHS, SCRUB_LR
from .wfisher import wfisher

# name -> (method, one line for --help and the README). The Original and the paper's six
# first, then the original's other methods, then the methods that came after the paper.
METHODS = {
    "raw": (raw, "Original: no unlearning, the model evaluated as loaded"),
    "retrain": (retrain, "Retrain: train the initialisation --train_seed gives (with the mask) on the retain set"),
    "FT": (FT, "FT: fine-tune on the retain set"),
    "GA": (GA, "GA: gradient ascent on the forget set"),
    "fisher_new": (fisher_new, "FF: Fisher forgetting, noise scaled by alpha / Fisher of the retain set"),
    "wfisher": (wfisher, "IU: influence unlearning, one WoodFisher step of size alpha"),
    "FT_prune": (FT_prune, "l1-sparse: FT plus a decaying alpha * l1 penalty"),
    "FT_l1": (FT_l1, "FT_l1: the computation of l1-sparse under the original's other name"),
    "GA_l1": (GA_l1, "GA_l1: GA plus a constant alpha * l1 penalty"),
    "fisher": (fisher, "the original's older Fisher forgetting: noise of std min(sqrt(alpha / F), 1e-3), per-sample Fisher"),
    "FT_prune_bi": (FT_prune_bi, "FT while pruning --rate of the remaining conv weights, every second epoch"),
    "retrain_ls": (retrain_ls, "Retrain with label smoothing 0.1"),
    "retrain_sam": (retrain_sam, "Retrain with sharpness-aware minimisation (adaptive, rho 2)"),
    "RL": (RL, "random labels: each epoch the forget set with random labels, then the retain set (SalUn's RL)"),
    "SalUn": (SalUn, "RL moving only the --salun_ratio most salient weights for the forget set (Fan et al., 2024)"),
    "SCRUB": (SCRUB, "the model distilled from itself: away on the forget set, towards it on the retain set (Kurmanji et al., 2023)"),
    "boundary_shrink": (boundary_shrink, "fine-tune the forget set on the labels of its nearest wrong class, by FGSM (Chen et al., 2023)"),
    "boundary_expanding": (boundary_expanding, "train the forget set into an extra class, then remove it (Chen et al., 2023)"),
}
UNLEARN_METHODS = {name: method for name, (method, _) in METHODS.items()}
METHOD_HELP = {name: text for name, (_, text) in METHODS.items()}

# Methods that start from a fresh initialisation (with the mask), not the checkpoint's weights.
FROM_SCRATCH = {"retrain", "retrain_ls", "retrain_sam"}
FROM_TRAINED_WEIGHTS = set(UNLEARN_METHODS) - FROM_SCRATCH
# Methods that run epochs of SGD: --unlearn_lr, --unlearn_epochs, --rewind_epoch/--rewind_pth
# and per-epoch checkpoints apply to them.
ITERATIVE_METHODS = {"retrain", "FT", "GA", "FT_prune", "FT_l1", "GA_l1", "FT_prune_bi", "retrain_ls", "retrain_sam"} | {
    "RL", "SalUn", "SCRUB", "boundary_shrink", "boundary_expanding",
}  # fmt: skip
# Methods that --alpha sets the strength of.
ALPHA_METHODS = {"fisher_new", "wfisher", "FT_prune", "FT_l1", "GA_l1", "fisher"}
# Methods that prune during unlearning (the mask may only lose weights).
PRUNING_METHODS = {"FT_prune_bi"}

# The paper does not state alpha for these; the defaults work on the digits data (see
# README). Methods without an entry take the original's 0.2.
DEFAULT_ALPHA = {"fisher_new": 1e-7, "wfisher": 3.0, "FT_prune": 1e-3, "FT_l1": 1e-3, "GA_l1": 1e-3}
ORIGINAL_ALPHA = 0.2
# Shared options that a method sets to its source's values when the command line leaves them out.
METHOD_DEFAULTS = {"SCRUB": {"unlearn_lr": SCRUB_LR, "unlearn_epochs": SCRUB_EPOCHS}}


__all__ = [
    "ALPHA_METHODS",
    "FROM_SCRATCH",
    "ITERATIVE_METHODS",
    "METHOD_DEFAULTS",
    "METHOD_HELP",
    "PRUNING_METHODS",
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
    """The method called `name`: `method(data_loaders, model, criterion, args)`, as in the original."""
    if name not in UNLEARN_METHODS:
        raise NotImplementedError(f"Unlearn method {name} not implemented! Choose one of {', '.join(UNLEARN_METHODS)}")
    return UNLEARN_METHODS[name]


def outputs(method):
    """What an unlearning run of `method` writes in --save_dir (glob patterns)."""
    return (f"{method}checkpoint.pth.tar", f"{method}eval_result.pth.tar", f"{method}eval_result.json")


def prepare_model(model, state_dict, method):
    """Put the checkpoint's mask on `model`, and its weights unless `method` retrains.

    `model` is freshly initialised; the retrain methods keep that initialisation (with the mask).
    """
    pruner.check_state_dict_fits(model, state_dict)
    if method in FROM_TRAINED_WEIGHTS:
        pruner.load_pruned_model(model, state_dict)
    else:
        mask = pruner.extract_mask(state_dict)
        if mask:
            pruner.apply_mask(model, mask)
