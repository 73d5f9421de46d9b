"""Unlearn a forget set from a dense or sparse model, then evaluate it.

Reads --mask (a checkpoint of main_imp.py: dense `0model_SA_best.pth.tar` or sparse
`1model_SA_best.pth.tar`, or any state dict in the original's format), chooses the
forget set, runs --unlearn and evaluates. Writes in --save_dir:
  forget_indexes.npy            forget-set positions in the training split
  <method>checkpoint.pth.tar    unlearned model + evaluation so far (resume point)
  <method>eval_result.pth.tar   the evaluation (the original's file)
  <method>eval_result.json      readable: UA, RA, TA, MIA-Efficacy, RTE, accuracies, MIA
                                scores, sparsity, forget-set size, arguments, versions

FT on CIFAR-10 class-wise forgetting (paper; about 10 GPU-minutes):
  python -u main_forget.py --save_dir ${save_dir} --mask ${mask_path} --unlearn FT \
      --num_indexes_to_replace 4500 --unlearn_lr 0.01 --unlearn_epochs 10
On digits (seconds on a CPU):
  python main_forget.py --dataset digits --arch resnet20s --mask runs/demo/masks/omp/1model_SA_best.pth.tar \
      --unlearn FT --unlearn_lr 0.01 --unlearn_epochs 5 --batch_size 64 --save_dir runs/ft
"""

import logging
import os

import arg_parser
import evaluation
import pruner
import unlearn
from dataset import TensorLoader, load_dataset, select_forget_set, unlearning_positions
from trainer import build_model
from unlearn.SalUn import load_saliency_mask
from utils import (
    UserError,
    atomic_save_json,
    atomic_save_npy,
    atomic_torch_save,
    complete_stages,
    eval_json_path,
    eval_result_path,
    forget_indexes_path,
    get_device,
    load_checkpoint,
    open_save_dir,
    run_cli,
    setup_logging,
    setup_seed,
    state_dict_of,
    versions,
)

log = logging.getLogger("unlearn_sparse")


def check_forget_args(args):
    if not args.save_dir:
        raise UserError("--save_dir is required: the folder for the unlearned model and its results")
    if not args.mask:
        raise UserError("--mask is required: the checkpoint to unlearn from (e.g. <main_imp save_dir>/1model_SA_best.pth.tar)")
    if not os.path.isfile(args.mask):
        raise UserError(f"--mask {args.mask}: file not found")
    if args.batch_size < 1:
        raise UserError(f"--batch_size {args.batch_size}: must be at least 1")
    arg_parser.check_unlearn_args(args)
    arg_parser.check_data_args(args)
    if args.rewind_epoch and args.unlearn in unlearn.ITERATIVE_METHODS and not args.rewind_pth:
        raise UserError(
            f"--rewind_epoch {args.rewind_epoch}: {args.unlearn} would start from the weights in --rewind_pth, and none was given "
            "(pass --rewind_pth FILE, e.g. <main_imp save_dir>/epoch_<k>_rewind_weight.pt, or leave --rewind_epoch at 0)"
        )
    if args.rewind_pth and not os.path.isfile(args.rewind_pth):
        raise UserError(f"--rewind_pth {args.rewind_pth}: file not found")
    if args.mask_path and not os.path.isfile(args.mask_path):
        raise UserError(f"--mask_path {args.mask_path}: file not found")


def build_loaders(splits, positions, args, device):
    """Loaders the methods train on (shuffled, augmented) and the evaluation loaders."""
    train, val, test = splits.train.to(device), splits.val.to(device), splits.test.to(device)
    bs = args.batch_size
    method_loaders = {
        "retain": TensorLoader(train, positions["retain"], bs, shuffle=True, augment=splits.augment, seed=args.seed),
        "forget": TensorLoader(train, positions["forget"], bs, shuffle=True, augment=splits.augment, seed=args.seed),
        "val": TensorLoader(val, positions["val"], bs),
        "test": TensorLoader(test, positions["test"], bs),
    }
    eval_loaders = {
        "retain": TensorLoader(train, positions["retain"], bs),
        "forget": TensorLoader(train, positions["forget"], bs),
        "val": method_loaders["val"],
        "test": method_loaders["test"],
    }
    return method_loaders, eval_loaders


def readable_result(result, model, forget, args, device):
    return {
        "method": args.unlearn,
        **evaluation.paper_metrics(result),
        "accuracy": result["accuracy"],
        "SVC_MIA_forget_efficacy": result["SVC_MIA_forget_efficacy"],
        "SVC_MIA_training_privacy": result["SVC_MIA_training_privacy"],
        "unlearn_seconds": result["unlearn_seconds"],
        "sparsity": pruner.sparsity(model),
        "forget_set_size": int(len(forget.positions)),
        "forget_class": forget.whole_class,
        "scenario": scenario(forget, args),
        "mask": os.path.abspath(args.mask),
        "device": str(device),
        "args": vars(args),
        "versions": versions(),
        "units": {"UA, RA, TA, MIA-Efficacy": "percent", "RTE": "minutes", "sparsity": "percent of conv weights"},
    }


def main():
    args = arg_parser.parse_args()
    setup_logging()
    # Every check first: options, the mask file, the data, the forget set, the mask's fit.
    check_forget_args(args)
    device = get_device(args.gpu)
    mask_checkpoint = load_checkpoint(args.mask, "cpu", what="--mask checkpoint")
    check_same_data(mask_checkpoint, args)
    mask_state = state_dict_of(mask_checkpoint)
    rewinding = args.rewind_epoch and args.rewind_pth and args.unlearn in unlearn.ITERATIVE_METHODS
    rewind_state = state_dict_of(load_checkpoint(args.rewind_pth, "cpu", what="--rewind_pth checkpoint")) if rewinding else None
    splits = load_dataset(args)
    labels = splits.train.labels.numpy()
    forget = select_forget_set(labels, args.class_to_replace, args.num_indexes_to_replace, args.indexes_to_replace, args.seed)
    args.num_classes, args.forget_class = splits.num_classes, forget.whole_class
    # As the original: the model is built right after seeding with --train_seed, so the
    # retrain methods start from that initialisation (the mask run's own when the seeds agree).
    setup_seed(args.train_seed)
    model = build_model(args, splits, device)
    check_mask_fits_model(model, mask_state, args)
    if rewind_state is not None:
        check_fits_model(model, rewind_state, "--rewind_pth", args.rewind_pth, args)
    if args.mask_path and args.unlearn == "SalUn":
        load_saliency_mask(args.mask_path, model)
    result, progress = unlearn.read_resume_point(model, args.save_dir, args.unlearn, device) if args.resume else ({}, None)
    open_save_dir(args.save_dir, unlearn.outputs(args.unlearn), resume=args.resume)
    if args.rewind_pth and not rewinding:
        log.warning("--rewind_pth is read only by the iterative methods with --rewind_epoch k > 0: ignored")
    if args.mask_path and args.unlearn != "SalUn":
        log.warning("--mask_path is SalUn's saliency mask: ignored by %s", args.unlearn)

    atomic_save_npy(forget.positions, forget_indexes_path(args.save_dir))
    positions = unlearning_positions(splits, forget)
    log.info("forget %d, retain %d training images (%s)", len(positions["forget"]), len(positions["retain"]), scenario(forget, args))
    method_loaders, eval_loaders = build_loaders(splits, positions, args, device)
    if "unlearn_seconds" not in result:
        unlearn.prepare_model(model, mask_state, args.unlearn)
        log.info("%s from %s (conv sparsity %.2f%%)", args.unlearn, args.mask, pruner.sparsity(model))
        method = unlearn.get_unlearn_method(args.unlearn)
        unlearn.unlearn_and_save(method, method_loaders, model, args, device, args.save_dir, result, progress)
        log.info("%s took %.1f s", args.unlearn, result["unlearn_seconds"])

    retain, forget_eval, test = eval_loaders["retain"], eval_loaders["forget"], eval_loaders["test"]
    stages = {
        "accuracy": lambda: evaluation.split_accuracies(model, eval_loaders),
        "SVC_MIA_forget_efficacy": lambda: evaluation.mia_forget_efficacy(model, retain, forget_eval, test),
        "SVC_MIA_training_privacy": lambda: evaluation.mia_training_privacy(model, retain, test),
    }
    computed = complete_stages(result, stages, lambda: unlearn.save_unlearn_checkpoint(model, result, args.save_dir, args.unlearn))
    if computed or not os.path.isfile(eval_json_path(args.save_dir, args.unlearn)):
        atomic_torch_save(result, eval_result_path(args.save_dir, args.unlearn))
        atomic_save_json(readable_result(result, model, forget, args, device), eval_json_path(args.save_dir, args.unlearn))
    else:
        log.info("--resume: evaluation already complete; results unchanged")
    m = evaluation.paper_metrics(result)
    print(
        f"{args.unlearn}: UA {m['UA']:.2f}  MIA-Efficacy {m['MIA-Efficacy']:.2f}  RA {m['RA']:.2f}  TA {m['TA']:.2f}  "
        f"RTE {m['RTE']:.3f} min  (sparsity {pruner.sparsity(model):.2f}%)"
    )


DATA_OPTIONS = ("dataset", "train_per_class", "test_per_class", "train_positions")


def check_same_data(checkpoint, args):
    """UserError when the --mask checkpoint records a dataset or size caps other than this run's."""
    saved = checkpoint.get("args") if isinstance(checkpoint, dict) else None
    if not isinstance(saved, dict):
        return  # a checkpoint of the original code, or one without its arguments
    for option in DATA_OPTIONS:
        then, now = saved.get(option), getattr(args, option)
        if option in saved and then != now:
            show = {None: "all"}
            raise UserError(
                f"--mask {args.mask} was trained with --{option} {show.get(then, then)} (this run: {show.get(now, now)}); "
                "pass the data options of the run that made it"
            )


def check_mask_fits_model(model, state_dict, args):
    """UserError naming --mask when its checkpoint was made for another --arch or dataset."""
    check_fits_model(model, state_dict, "--mask", args.mask, args)


def check_fits_model(model, state_dict, option, path, args):
    """UserError naming `option` when its checkpoint was made for another --arch or dataset."""
    try:
        pruner.check_state_dict_fits(model, state_dict)
    except UserError as err:
        raise UserError(f"{option} {path} (--arch {args.arch}, --dataset {args.dataset}): {err}") from None


def scenario(forget, args):
    """class-wise (a whole class), random (--class_to_replace -1), class-subset, or indexes."""
    if forget.whole_class is not None:
        return "class-wise"
    if args.indexes_to_replace is not None:
        return "indexes"
    return "random" if args.class_to_replace == -1 else "class-subset"


if __name__ == "__main__":
    run_cli(main)
