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

import os

import arg_parser
import calibration
import distributed
import unlearn
import unlearning_run
from errors import UserError
from utils import run_cli, setup_logging


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
    if args.rewind_epoch and unlearn.METHODS[args.unlearn].iterative and not args.rewind_pth:
        raise UserError(
            f"--rewind_epoch {args.rewind_epoch}: {args.unlearn} would start from the weights in --rewind_pth, and none was given "
            "(pass --rewind_pth FILE, e.g. <main_imp save_dir>/epoch_<k>_rewind_weight.pt, or leave --rewind_epoch at 0)"
        )
    if args.rewind_pth and not os.path.isfile(args.rewind_pth):
        raise UserError(f"--rewind_pth {args.rewind_pth}: file not found")
    if args.mask_path and not os.path.isfile(args.mask_path):
        raise UserError(f"--mask_path {args.mask_path}: file not found")
    calibration.check_args(args, unlearn.METHODS[args.unlearn])
    if args.calibrate and distributed.launched():
        raise UserError("--calibrate runs its search in one process: run it without torchrun, then pass its result to --calibrated_from")
    if not unlearn.METHODS[args.unlearn].keeps_mask:  # Retrain (pipeline) is a pruning run: its options, checked first
        arg_parser.check_imp_args(args)


def main():
    args = arg_parser.parse_args()
    setup_logging()
    check_forget_args(args)
    unlearning_run.forget(args)


if __name__ == "__main__":
    run_cli(main)
