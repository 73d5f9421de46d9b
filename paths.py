"""Every file name a run writes and a workflow script reads: the run-folder layout, in one place.

A pruning run (main_imp.py, main_synflow.py) in its --save_dir:
  <s>checkpoint.pth.tar, <s>model_SA_best.pth.tar, <s>net_train.png   per state s
  epoch_<k>_rewind_weight.pt, imp_summary.json
An unlearning run (main_forget.py, main_backdoor.py) in its --save_dir:
  forget_indexes.npy, <method>checkpoint.pth.tar, <method>eval_result.pth.tar,
  <method>eval_result.json, SalUn's saliency mask with_<ratio>.pt, and
  <method>_run/ for Retrain (pipeline), a whole pruning run
A sweep (scripts/sweep.py) in its --out folder:
  sweep.json, logs/, slurm/, masks/<mask>[/train_seed<k>]/,
  unlearn/<model>[/train_seed<k>]/<scenario>/<method>[/<setting>]/seed<s>/ with task.json
U-LiRA (scripts/ulira.py) in its RUN folder: plan/, grid.json, ulira/<model>/<method>.{json,npz},
  ulira/summary.md
"""

import os

# ---------------------------------------------------------------- a pruning run


def checkpoint_path(save_dir, state, filename="checkpoint.pth.tar"):
    """`<save_dir>/<state>checkpoint.pth.tar`, the original's naming."""
    return os.path.join(save_dir, f"{state}{filename}")


def best_checkpoint_path(save_dir, state):
    return checkpoint_path(save_dir, state, "model_SA_best.pth.tar")


def rewind_weight_path(save_dir, epoch):
    return os.path.join(save_dir, f"epoch_{epoch}_rewind_weight.pt")


def training_curve_path(save_dir, state):
    return os.path.join(save_dir, f"{state}net_train.png")


def imp_summary_path(save_dir):
    return os.path.join(save_dir, "imp_summary.json")


# What a pruning run writes; a new run without --resume moves an earlier run's aside.
PRUNING_RUN_OUTPUTS = (
    "[0-9]*checkpoint.pth.tar",
    "[0-9]*model_SA_best.pth.tar",
    "[0-9]*net_train.png",
    "epoch_*_rewind_weight.pt",
    "imp_summary.json",
)

# ---------------------------------------------------------------- an unlearning run


def forget_indexes_path(save_dir):
    return os.path.join(save_dir, "forget_indexes.npy")


def unlearn_checkpoint_path(save_dir, method):
    """`<save_dir>/<method>checkpoint.pth.tar`: the unlearned model and its evaluation."""
    return checkpoint_path(save_dir, method)


def eval_result_path(save_dir, method):
    return checkpoint_path(save_dir, method, "eval_result.pth.tar")


def eval_json_path(save_dir, method):
    return checkpoint_path(save_dir, method, "eval_result.json")


EVAL_JSON_GLOB = "*eval_result.json"


def unlearning_outputs(method):
    """What an unlearning run of `method` writes in --save_dir (glob patterns)."""
    return (f"{method}checkpoint.pth.tar", f"{method}eval_result.pth.tar", f"{method}eval_result.json", f"{method}_run")


def method_run_dir(save_dir, method):
    """`<save_dir>/<method>_run/`: the files of a method that is itself a run (Retrain (pipeline): a pruning run)."""
    return os.path.join(save_dir, f"{method}_run")


def saliency_mask_path(save_dir, ratio):
    """SalUn's saliency mask of a ratio, named as SalUn's generate_mask.py names it: `with_<ratio>.pt`."""
    return os.path.join(save_dir, f"with_{ratio}.pt")


PREVIOUS_PREFIX = "previous-"  # results of an earlier run, moved aside: previous-<time>/

# ---------------------------------------------------------------- a sweep

SWEEP_MANIFEST = "sweep.json"
GRID_COPY = "grid.json"  # a collected run's copy of the grid it ran (summarize reads its "comparisons")
TASK_FILE = "task.json"  # an unlearning task's name and labels, beside its results


def slug(text):
    """A folder name for a label: "95% sparse" -> "95_sparse"."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text.replace("% ", "_").replace("%", ""))


def train_seed_folder(train_seed):
    return [] if train_seed is None else [f"train_seed{train_seed}"]


def sweep_mask_dir(out, mask, train_seed=None):
    return os.path.join(out, "masks", mask, *train_seed_folder(train_seed))


def sweep_unlearn_dir(out, model, scenario, method, seed, setting="", train_seed=None):
    parts = [slug(model), *train_seed_folder(train_seed), slug(scenario), method, *([slug(setting)] if setting else []), f"seed{seed}"]
    return os.path.join(out, "unlearn", *parts)


def sweep_calibration_dir(unlearn_dir, seed):
    """A calibration task's folder beside its method's seed folders: .../<method>/[<setting>/]calibration/seed<s>/."""
    return os.path.join(os.path.dirname(unlearn_dir), "calibration", f"seed{seed}")


def sweep_logs_dir(out):
    return os.path.join(out, "logs")


def sweep_slurm_dir(out):
    return os.path.join(out, "slurm")


# What scripts/collect_results.py copies: results and labels, no checkpoints.
COLLECTED = (EVAL_JSON_GLOB, TASK_FILE, "imp_summary.json")

# ---------------------------------------------------------------- U-LiRA


def ulira_plan_file(out, kind, k):
    """RUN/plan/half_<k>.txt (shadow model k's training positions) or forget_<k>.txt."""
    return os.path.join(out, "plan", f"{kind}_{k}.txt")


def ulira_grid(out):
    return os.path.join(out, "grid.json")


def ulira_dir(out):
    return os.path.join(out, "ulira")


def ulira_report(out, model, method, ext=".json"):
    return ulira_file(ulira_dir(out), model, method, ext)


def ulira_file(folder, model, method, ext=".json"):
    """<ulira folder>/<model>/<method>.json (the report) or .npz (the statistics it was computed from)."""
    return os.path.join(folder, slug(model), f"{method}{ext}")


def ulira_summary(out):
    return os.path.join(ulira_dir(out), "summary.md")


def ulira_shadow_dir(out, model, k, method):
    """Shadow model k's unlearning by `method`: a sweep task of model "<model> <k>", scenario "shadow", seed 1."""
    return sweep_unlearn_dir(out, f"{model} {k}", "shadow", method, 1)
