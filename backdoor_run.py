"""The trojan cleanse, as a library: poison a training set, train and prune on it (or load
the trojaned model), unlearn the poisoned images, measure the attack before and after.

`main_backdoor.py` is its command line; the pruning is `pruning_run.py`'s, the unlearning
`unlearning_run.py`'s.
"""

import logging
import os

import torch

import pruner
from checkpoints import atomic_torch_save, load_checkpoint, state_dict_of
from dataset import ImageSet, TensorLoader, add_trigger, get_dataset, load_dataset, select_forget_set
from errors import UserError
from paths import PRUNING_RUN_OUTPUTS, unlearning_outputs
from pruning_run import resume_if_asked, run_states, setup_run
from trainer import build_model, evaluate
from unlearning_run import (
    check_fits_model,
    check_same_data,
    complete_stages,
    method_loaders,
    read_resume_point,
    results_written,
    save_unlearn_checkpoint,
    unlearn_model,
    write_results,
)
from utils import open_save_dir, setup_seed

log = logging.getLogger("unlearn_sparse")


def poison(splits, args):
    """(poisoned training set, poisoned positions, triggered test set, positions of its other classes).

    Every test image gets the trigger and the target label, the target class's included,
    as in the original's attack accuracy.
    """
    n_train = len(splits.train)
    if args.num_indexes_to_replace > n_train:
        raise UserError(f"--num_indexes_to_replace {args.num_indexes_to_replace}: the training split holds only {n_train} images")
    positions = select_forget_set(splits.train.labels.numpy(), -1, args.num_indexes_to_replace, None, args.seed).positions
    value, target = get_dataset(args.dataset).trigger_value, args.class_to_replace
    images, labels = splits.train.images.clone(), splits.train.labels.clone()
    images[positions] = add_trigger(images[positions], args.trigger_size, value)
    labels[positions] = target
    triggered = ImageSet(add_trigger(splits.test.images, args.trigger_size, value), torch.full_like(splits.test.labels, target))
    others = torch.nonzero(splits.test.labels != target).flatten()
    return ImageSet(images, labels), positions, triggered, others


def trojaned_model(args, run, splits, original_state):
    """The --mask model (mask first, then weights), or train and prune on the poisoned set and save it there.

    The model saved is the last epoch of the last state, as the original's OMP (not the
    best-validation checkpoint that main_imp.py hands to main_forget.py).
    """
    if original_state is not None:
        pruner.load_pruned_model(run.model, original_state)
        log.info("loaded the trojaned model from %s (conv sparsity %.2f%%)", args.mask, pruner.sparsity(run.model))
        return
    # OMP: train, prune once, rewind, retrain (a single dense state when --rate is 0).
    resumed = resume_if_asked(run, args)
    if args.prune == "synflow" and not resumed:
        mask = pruner.synflow_mask(run.model, None, args.rate, args.synflow_rounds, tuple(splits.train.images.shape[1:]))
        pruner.apply_mask(run.model, mask)
        run.new_optimizer()
    run_states(run, args)
    atomic_torch_save({"state_dict": pruner.compact_state_dict(run.model.state_dict()), "args": vars(args)}, args.mask)
    log.info("trojaned model (conv sparsity %.2f%%) saved to %s", pruner.sparsity(run.model), args.mask)


def cleanse(args):
    """Poison, train and prune (or load --mask), unlearn the poison, measure the attack: main_backdoor.py, its options checked."""
    # Every check first: the --mask file and its fit, the data, the poison count.
    if get_dataset(args.dataset).streamed:
        raise UserError(
            f"main_backdoor.py poisons images held in memory; --dataset {args.dataset} is streamed from disk and not supported here"
        )
    original_state = None
    if os.path.isfile(args.mask):
        original_checkpoint = load_checkpoint(args.mask, "cpu", what="--mask checkpoint")
        check_same_data(original_checkpoint, args)
        original_state = state_dict_of(original_checkpoint)
    splits = load_dataset(args)
    poisoned, positions, triggered, others = poison(splits, args)
    args.num_classes, args.forget_class = splits.num_classes, None
    args.pruning_times = 2 if args.rate > 0 and args.prune == "omp" else 1
    args.prune_type = "rewind_lt" if args.rewind_epoch > 0 else "lt"
    run, _ = setup_run(args, splits=splits, train_set=poisoned)
    model, device = run.model, run.device
    if original_state is not None:
        check_fits_model(model, original_state, "--mask", args.mask, args)
    result, progress = read_resume_point(model, args.save_dir, args.unlearn, device) if args.resume else ({}, None)
    finished = unlearning_outputs(args.unlearn) + (PRUNING_RUN_OUTPUTS if original_state is None else ())
    open_save_dir(args.save_dir, finished, resume=args.resume)

    if "test_acc" not in result:
        trojaned_model(args, run, splits, original_state)
    retain = sorted(set(range(len(poisoned))) - set(positions.tolist()))
    loaders = method_loaders(poisoned.to(device), retain, positions, run.val_loader, run.test_loader, args, splits.augment)
    bs = args.batch_size
    triggered = triggered.to(device)
    attack_all, attack_others = TensorLoader(triggered, batch_size=bs), TensorLoader(triggered, others, batch_size=bs)

    def attack(suffix=""):
        return {
            f"test_acc{suffix}": lambda: evaluate(model, run.test_loader),
            f"attack_acc{suffix}": lambda: evaluate(model, attack_all),
            f"attack_success_rate{suffix}": lambda: evaluate(model, attack_others),
        }

    if "test_acc" not in result:
        result = {name: measure() for name, measure in attack().items()}
        log.info(
            "before unlearning: clean test accuracy %.2f%%, attack accuracy %.2f%% (the other classes' images: %.2f%%)",
            result["test_acc"], result["attack_acc"], result["attack_success_rate"],
        )  # fmt: skip
        original_state = {k: v.clone() for k, v in model.state_dict().items()}
    if "unlearn_seconds" not in result:
        if original_state is None:  # resumed without --mask's file being there: the trojaned model is gone
            raise UserError(f"--resume: {args.mask} is missing; it holds the trojaned model the unlearning started from")
        setup_seed(args.train_seed)  # the retrain methods start from the initialisation --train_seed gives, with the mask
        model = build_model(args, splits, device)
        unlearn_model(model, original_state, loaders, args, device, result, progress)

    computed = complete_stages(result, attack("_unlearn"), lambda: save_unlearn_checkpoint(model, result, args.save_dir, args.unlearn))
    if results_written(computed, args):
        readable = {**result, "poisoned": int(len(positions)), "target_class": args.class_to_replace}
        units = {"*_acc*": "percent", "unlearn_seconds": "seconds", "sparsity": "percent of conv weights"}
        write_results(result, readable, model, args, units)
    print(
        f"{args.unlearn} (sparsity {pruner.sparsity(model):.2f}%): "
        f"clean accuracy {result['test_acc']:.2f}% -> {result['test_acc_unlearn']:.2f}%, "
        f"attack accuracy {result['attack_acc']:.2f}% -> {result['attack_acc_unlearn']:.2f}% "
        f"(other classes {result.get('attack_success_rate', float('nan')):.2f}% -> {result['attack_success_rate_unlearn']:.2f}%)"
    )
