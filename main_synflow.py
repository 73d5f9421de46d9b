"""Prune at initialisation with SynFlow (no data), then train the sparse model.

SynFlow (Tanaka et al., 2020) scores conv weights by |theta * dR/dtheta|, R the summed
output of the network with absolute weights on an all-ones input, over --synflow_rounds
rounds that raise the sparsity exponentially to --rate. The sparse model then trains as
state 0 of main_imp.py, with the same files in --save_dir (0checkpoint.pth.tar,
0model_SA_best.pth.tar, 0net_train.png, imp_summary.json) and the same --resume.
--pruning_times, --prune_type and --rewind_epoch are accepted and ignored (one state,
no rewinding).

The paper's command (182 epochs on CIFAR-10, about 1.5 GPU hours for resnet18):
  python -u main_synflow.py --data ./data --dataset cifar10 --prune_type rewind_lt --rewind_epoch 8 \
      --save_dir ${save_dir} --rate ${rate} --pruning_times 1 --num_workers 8
On digits (about a minute on 2 CPU cores):
  python main_synflow.py --dataset digits --arch resnet20s --epochs 8 --decreasing_lr 5,7 --batch_size 64 \
      --rate 0.9 --save_dir runs/synflow
"""

import logging

import arg_parser
import pruner
from errors import UserError
from paths import PRUNING_RUN_OUTPUTS
from pruning_run import resume_if_asked, run_states, setup_run
from utils import open_save_dir, run_cli, setup_logging

log = logging.getLogger("unlearn_sparse")


def main():
    args = arg_parser.parse_args()
    setup_logging()
    if args.synflow_rounds < 1:
        raise UserError(f"--synflow_rounds {args.synflow_rounds}: must be at least 1")
    args.pruning_times = 1  # one sparse state; no rewinding
    arg_parser.check_imp_args(args)
    run, splits = setup_run(args)
    resumed = resume_if_asked(run, args)
    open_save_dir(args.save_dir, PRUNING_RUN_OUTPUTS, resume=args.resume)
    if not resumed:
        mask = pruner.synflow_mask(run.model, None, args.rate, args.synflow_rounds, splits.input_shape)
        pruner.apply_mask(run.model, mask)
        run.new_optimizer()
        log.info("SynFlow: %d rounds, conv sparsity %.2f%%", args.synflow_rounds, pruner.sparsity(mask))
    run_states(run, args)


if __name__ == "__main__":
    run_cli(main)
