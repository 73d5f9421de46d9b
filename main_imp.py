"""Train, prune, rewind, repeat: one-shot (OMP) and iterative (IMP) magnitude pruning.

Produces in --save_dir, per state s (state 0 is dense):
  <s>checkpoint.pth.tar       latest epoch (resume from it with --resume --checkpoint)
  <s>model_SA_best.pth.tar    best validation accuracy: the model to unlearn from (--mask)
  <s>net_train.png            training curve
  epoch_<k>_rewind_weight.pt  weights after epoch k of state 0 (rewind_lt)
  imp_summary.json            sparsity, best val and test accuracy per state

OMP to 95% sparsity (the paper's setting; 2 x 182 epochs, about 2 x 1.5 GPU hours on CIFAR-10):
  python -u main_imp.py --data ./data --dataset cifar10 --arch resnet18 --prune_type rewind_lt \
      --rewind_epoch 8 --save_dir omp --rate 0.95 --pruning_times 2
On the bundled digits data (a few minutes on 2 CPU cores):
  python main_imp.py --dataset digits --arch resnet20s --epochs 15 --decreasing_lr 8,12 \
      --batch_size 64 --rate 0.95 --pruning_times 2 --rewind_epoch 2 --save_dir runs/digits
"""

import arg_parser
from paths import PRUNING_RUN_OUTPUTS
from pruning_run import resume_if_asked, run_states, setup_run
from utils import open_save_dir, run_cli, setup_logging


def main():
    args = arg_parser.parse_args()
    setup_logging()
    arg_parser.check_imp_args(args)
    run, _ = setup_run(args)
    resume_if_asked(run, args)
    open_save_dir(args.save_dir, PRUNING_RUN_OUTPUTS, resume=args.resume)
    run_states(run, args)


if __name__ == "__main__":
    run_cli(main)
