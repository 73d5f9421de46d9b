"""Retrain (pipeline): the exact reference for a pruned model.

Retrain under the original's mask is not exact unlearning of a pruned model: the mask was
computed from data that included the forget set. This method redoes the whole prune-first
pipeline on the retain set alone: dense training from the initialisation --train_seed
gives, pruning, rewinding and retraining, exactly as main_imp.py does it with the same
options (--epochs, --lr, --decreasing_lr, --pruning_times, --rate, --prune_type,
--rewind_epoch, --random_prune), and ends with the last state's best-validation model, as
main_imp.py's `<s>model_SA_best.pth.tar`. With --pruning_times 1 it is a dense Retrain by
the training recipe. The pruning run's files go to --save_dir/retrain_pipeline_run/, and
--resume continues it from its last epoch.
"""

import copy
import tempfile

import pruner
from checkpoints import load_checkpoint, state_dict_of
from paths import best_checkpoint_path, method_run_dir
from pruning_run import ImpRun, resume_if_asked, run_states

from .method import EXACT_REFERENCE, Method


def retrain_pipeline(data_loaders, model, criterion, args):
    unmask(model)  # the pipeline starts dense and prunes anew
    with tempfile.TemporaryDirectory() as scratch:  # a call from code may give no --save_dir
        run_args = copy.copy(args)
        run_args.save_dir = method_run_dir(args.save_dir, "retrain_pipeline") if getattr(args, "save_dir", None) else scratch
        device = next(model.parameters()).device
        run = ImpRun(run_args, model, (data_loaders["retain"], data_loaders["val"], data_loaders["test"]), device)
        resume_if_asked(run, run_args)
        run_states(run, run_args)
        best = best_checkpoint_path(run_args.save_dir, run_args.pruning_times - 1)
        pruner.load_pruned_model(model, state_dict_of(load_checkpoint(best, device)))
    return model


def unmask(model):
    """Drop the model's mask, keeping the weights under it (an initialisation keeps its pruned values)."""
    if pruner.is_pruned(model):
        dense = {k.replace("weight_orig", "weight"): v.clone() for k, v in model.state_dict().items() if not k.endswith("weight_mask")}
        pruner.remove_prune(model)
        model.load_state_dict(dense)


METHOD = Method(
    "retrain_pipeline",
    retrain_pipeline,
    "Retrain (pipeline)",
    "Retrain (pipeline): main_imp.py's whole run (dense training, pruning, rewinding, retraining) on the retain set "
    "from the --train_seed initialisation, with its options: the exact reference for a pruned model",
    iterative=False,
    from_scratch=True,
    keeps_mask=False,
    role=EXACT_REFERENCE,
)
