"""Trojan cleanse: poison, train and prune on the poisoned data, unlearn the poison.

--num_indexes_to_replace training images (drawn as a random forget set with --seed) get
a --trigger_size square trigger 2 pixels in from the bottom-right corner (black, as in
the original; white on digits, whose background is black) and the target label
--class_to_replace. The model is trained and pruned on that set (--prune omp: train,
prune --rate of the conv weights, rewind to epoch --rewind_epoch, 0 = the
initialisation, retrain; --rate 0 gives a dense model) and saved to --mask; when --mask
exists it is loaded instead (its mask applied before its weights). Then --unlearn
forgets the poisoned samples, the clean rest being the retain set.

Reports, before and after unlearning, the clean test accuracy (test_acc,
test_acc_unlearn) and, as the original computes it, attack_acc / attack_acc_unlearn: the
share of all test images, the target class's included, classified as the target once
triggered; beside it attack_success_rate / attack_success_rate_unlearn, the same share over
the other classes' images only. In <method>eval_result.pth.tar and
<method>eval_result.json in --save_dir. The trojaned model saved to --mask is the last
epoch of the retraining after pruning, as the original's OMP. Retrain (and retrain_ls,
retrain_sam) start from the initialisation --train_seed gives, under the mask.

The paper's command (CIFAR-10, resnet18):
  python -u main_backdoor.py --save_dir ${save_dir} --mask ${mask_path} --unlearn FT --num_indexes_to_replace 4500
On digits (a few minutes on 2 CPU cores):
  python main_backdoor.py --dataset digits --arch resnet20s --batch_size 64 --epochs 10 --decreasing_lr 6,8 \
      --num_indexes_to_replace 130 --rate 0.95 --rewind_epoch 2 --mask runs/trojan/sparse.pth.tar \
      --unlearn FT --unlearn_lr 0.01 --unlearn_epochs 5 --save_dir runs/trojan
"""

import logging
import os

import torch

import arg_parser
import pruner
import unlearn
from dataset import DATASET_SHAPES, ImageSet, TensorLoader, add_trigger, load_dataset, select_forget_set, trigger_value
from main_forget import check_mask_fits_model, check_same_data
from main_imp import IMP_OUTPUTS, resume_if_asked, run_states, setup_run
from trainer import build_model, evaluate
from utils import (
    UserError,
    atomic_save_json,
    atomic_torch_save,
    complete_stages,
    eval_json_path,
    eval_result_path,
    load_checkpoint,
    open_save_dir,
    run_cli,
    setup_logging,
    setup_seed,
    state_dict_of,
    versions,
)

log = logging.getLogger("unlearn_sparse")
PRUNE_CHOICES = ("omp", "synflow")


def check_backdoor_args(args):
    arg_parser.check_training_args(args)
    if not args.mask:
        raise UserError("--mask is required: the trojaned model's file (loaded when it exists, else trained and written there)")
    if args.num_indexes_to_replace is None or args.num_indexes_to_replace < 1:
        raise UserError("--num_indexes_to_replace: how many training images to poison (at least 1)")
    if args.indexes_to_replace is not None:
        raise UserError("--indexes_to_replace is not used by main_backdoor.py: the poisoned images are drawn with --seed")
    num_classes, side = DATASET_SHAPES[args.dataset]
    target = 0 if args.class_to_replace is None else args.class_to_replace
    if not 0 <= target < num_classes:
        raise UserError(f"--class_to_replace {target}: the target label must be a class of {args.dataset}, 0..{num_classes - 1}")
    if not 1 <= args.trigger_size <= side - 2:
        raise UserError(
            f"--trigger_size {args.trigger_size}: the trigger must fit 2 pixels in from the corner of a {side}x{side} image (1..{side - 2})"
        )
    if args.rewind_pth and not os.path.isfile(args.rewind_pth):
        raise UserError(f"--rewind_pth {args.rewind_pth}: file not found")
    if args.prune not in PRUNE_CHOICES:
        raise UserError(f"--prune {args.prune}: choose one of {', '.join(PRUNE_CHOICES)}")
    if args.rewind_epoch < 0 or (args.rate > 0 and args.prune == "omp" and args.rewind_epoch > args.epochs):
        raise UserError(f"--rewind_epoch {args.rewind_epoch}: must be in 0..{args.epochs} (0 rewinds to the initialisation)")
    args.class_to_replace = target
    arg_parser.check_unlearn_args(args)


def poison(splits, args):
    """(poisoned training set, poisoned positions, triggered test set, positions of its other classes).

    Every test image gets the trigger and the target label, the target class's included,
    as in the original's attack accuracy.
    """
    n_train = len(splits.train)
    if args.num_indexes_to_replace > n_train:
        raise UserError(f"--num_indexes_to_replace {args.num_indexes_to_replace}: the training split holds only {n_train} images")
    positions = select_forget_set(splits.train.labels.numpy(), -1, args.num_indexes_to_replace, None, args.seed).positions
    value, target = trigger_value(args.dataset), args.class_to_replace
    images, labels = splits.train.images.clone(), splits.train.labels.clone()
    images[positions] = add_trigger(images[positions], args.trigger_size, value)
    labels[positions] = target
    triggered = ImageSet(add_trigger(splits.test.images, args.trigger_size, value), torch.full_like(splits.test.labels, target))
    others = torch.nonzero(splits.test.labels != target).flatten()
    return ImageSet(images, labels), positions, triggered, others


def trojaned_model(args, run, splits, mask_state):
    """The --mask model (mask first, then weights), or train and prune on the poisoned set and save it there.

    The model saved is the last epoch of the last state, as the original's OMP (not the
    best-validation checkpoint that main_imp.py hands to main_forget.py).
    """
    if mask_state is not None:
        pruner.load_pruned_model(run.model, mask_state)
        log.info("loaded the trojaned model from %s (conv sparsity %.2f%%)", args.mask, pruner.sparsity(run.model))
        return
    # OMP: train, prune once, rewind, retrain (a single dense state when --rate is 0).
    resumed = resume_if_asked(run, args)
    if args.prune == "synflow" and not resumed:
        mask = pruner.synflow_mask(run.model, None, args.rate, args.synflow_rounds, tuple(splits.train.images.shape[1:]))
        pruner.apply_mask(run.model, mask)
        run.new_optimizer()
    run_states(run, args)
    atomic_torch_save({"state_dict": run.model.state_dict(), "args": vars(args)}, args.mask)
    log.info("trojaned model (conv sparsity %.2f%%) saved to %s", pruner.sparsity(run.model), args.mask)


def main():
    args = arg_parser.parse_args()
    setup_logging()
    # Every check first: options, the --mask file and its fit, the data, the poison count.
    check_backdoor_args(args)
    mask_state = None
    if os.path.isfile(args.mask):
        mask_checkpoint = load_checkpoint(args.mask, "cpu", what="--mask checkpoint")
        check_same_data(mask_checkpoint, args)
        mask_state = state_dict_of(mask_checkpoint)
    splits = load_dataset(args)
    poisoned, positions, triggered, others = poison(splits, args)
    args.num_classes, args.forget_class = splits.num_classes, None
    args.pruning_times = 2 if args.rate > 0 and args.prune == "omp" else 1
    args.prune_type = "rewind_lt" if args.rewind_epoch > 0 else "lt"
    run, _ = setup_run(args, splits=splits, train_set=poisoned)
    model, device = run.model, run.device
    if mask_state is not None:
        check_mask_fits_model(model, mask_state, args)
    result, progress = unlearn.read_resume_point(model, args.save_dir, args.unlearn, device) if args.resume else ({}, None)
    finished = unlearn.outputs(args.unlearn) + (IMP_OUTPUTS if mask_state is None else ())
    open_save_dir(args.save_dir, finished, resume=args.resume)

    if "test_acc" not in result:
        trojaned_model(args, run, splits, mask_state)
    data = poisoned.to(device)
    retain = sorted(set(range(len(poisoned))) - set(positions.tolist()))
    bs = args.batch_size
    loaders = {
        "retain": TensorLoader(data, retain, bs, shuffle=True, augment=splits.augment, seed=args.seed),
        "forget": TensorLoader(data, positions, bs, shuffle=True, augment=splits.augment, seed=args.seed),
        "val": run.val_loader,
        "test": run.test_loader,
    }
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
        mask_state = {k: v.clone() for k, v in model.state_dict().items()}
    if "unlearn_seconds" not in result:
        if mask_state is None:  # resumed without --mask's file being there: the trojaned model is gone
            raise UserError(f"--resume: {args.mask} is missing; it holds the trojaned model the unlearning started from")
        setup_seed(args.train_seed)  # the retrain methods start from the initialisation --train_seed gives, with the mask
        model = build_model(args, splits, device)
        unlearn.prepare_model(model, mask_state, args.unlearn)
        method = unlearn.get_unlearn_method(args.unlearn)
        unlearn.unlearn_and_save(method, loaders, model, args, device, args.save_dir, result, progress)

    computed = complete_stages(
        result, attack("_unlearn"), lambda: unlearn.save_unlearn_checkpoint(model, result, args.save_dir, args.unlearn)
    )
    if computed or not os.path.isfile(eval_json_path(args.save_dir, args.unlearn)):
        atomic_torch_save(result, eval_result_path(args.save_dir, args.unlearn))
        readable = {
            "method": args.unlearn,
            **result,
            "sparsity": pruner.sparsity(model),
            "poisoned": int(len(positions)),
            "target_class": args.class_to_replace,
            "mask": os.path.abspath(args.mask),
            "args": vars(args),
            "versions": versions(),
            "units": {"*_acc*": "percent", "unlearn_seconds": "seconds", "sparsity": "percent of conv weights"},
        }
        atomic_save_json(readable, eval_json_path(args.save_dir, args.unlearn))
    print(
        f"{args.unlearn} (sparsity {pruner.sparsity(model):.2f}%): "
        f"clean accuracy {result['test_acc']:.2f}% -> {result['test_acc_unlearn']:.2f}%, "
        f"attack accuracy {result['attack_acc']:.2f}% -> {result['attack_acc_unlearn']:.2f}% "
        f"(other classes {result.get('attack_success_rate', float('nan')):.2f}% -> {result['attack_success_rate_unlearn']:.2f}%)"
    )


if __name__ == "__main__":
    run_cli(main)
