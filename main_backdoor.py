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

import os

import arg_parser
from backdoor_run import cleanse
from dataset import get_dataset
from errors import UserError
from utils import run_cli, setup_logging

PRUNE_CHOICES = ("omp", "synflow")


def check_backdoor_args(args):
    arg_parser.check_training_args(args)
    if not args.mask:
        raise UserError("--mask is required: the trojaned model's file (loaded when it exists, else trained and written there)")
    if args.num_indexes_to_replace is None or args.num_indexes_to_replace < 1:
        raise UserError("--num_indexes_to_replace: how many training images to poison (at least 1)")
    if args.indexes_to_replace is not None:
        raise UserError("--indexes_to_replace is not used by main_backdoor.py: the poisoned images are drawn with --seed")
    record = get_dataset(args.dataset)
    num_classes, side = record.classes, record.image_side(args)
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


def main():
    args = arg_parser.parse_args()
    setup_logging()
    check_backdoor_args(args)
    cleanse(args)


if __name__ == "__main__":
    run_cli(main)
