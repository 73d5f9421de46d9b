"""The pruning run: train, prune, rewind, repeat (OMP / IMP), as a library.

`main_imp.py`, `main_synflow.py` and `main_backdoor.py` are its command lines. An
`ImpRun` holds the state of one run (model, optimiser, schedule, what to rewind to);
`setup_run` builds it, `resume_if_asked` continues a saved one, `run_states` trains every
remaining state and writes `imp_summary.json`. File names: `paths.py`.
"""

import copy
import json
import logging
import os

import pruner
from checkpoints import CheckpointSchedule, atomic_save_json, atomic_torch_save, load_checkpoint, state_dict_of
from dataset import load_dataset, make_loader
from errors import UserError
from paths import best_checkpoint_path, checkpoint_path, imp_summary_path, rewind_weight_path, training_curve_path
from trainer import build_model, evaluate, make_optimizer, make_scheduler, parse_milestones, plot_training_curve, train_epoch
from utils import get_device, rng_state, set_rng_state, setup_seed

log = logging.getLogger("unlearn_sparse")
PLOT_EVERY = 10  # epochs between training-curve updates (always at the end of a state)


def latest_checkpoint(save_dir, pruning_times):
    """The checkpoint of the highest state in save_dir, or None."""
    for state in reversed(range(pruning_times)):
        path = checkpoint_path(save_dir, state)
        if os.path.isfile(path):
            return path
    return None


def new_history():
    return {"train_ta": [], "val_ta": [], "test_ta": []}


class ImpRun:
    """The state of one pruning run: model, optimiser, schedule and what to rewind to."""

    def __init__(self, args, model, loaders, device):
        self.args, self.model, self.device = args, model, device
        self.train_loader, self.val_loader, self.test_loader = loaders
        self.milestones = parse_milestones(args.decreasing_lr)
        self.state, self.epoch = 0, 0
        self.best_sa, self.history = 0.0, new_history()
        # lt rewinds to the initialisation; rewind_lt and pt fill this in later.
        self.rewind_weights = copy.deepcopy(model.state_dict()) if args.prune_type == "lt" else None
        # The best-validation weights of this state and of state 0, kept in memory: read back from
        # the file rank 0 has just written, another node could see an older copy.
        self.best_weights, self.dense_best_weights = None, None
        self.best_epoch, self.best_unwritten = None, False  # the best weights' epoch; not in their file yet
        self.schedule = CheckpointSchedule(args.checkpoint_every_s)
        self.new_optimizer()

    def new_optimizer(self, advance_epochs=0):
        a = self.args
        self.optimizer = make_optimizer(self.model, a.lr, a.momentum, a.weight_decay)
        self.scheduler = make_scheduler(self.optimizer, self.milestones, advance_epochs)

    def checkpoint(self):
        return {
            "state": self.state,
            "epoch": self.epoch,
            "state_dict": pruner.compact_state_dict(self.model.state_dict()),
            "best_sa": self.best_sa,
            "result": self.history,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "init_weight": self.rewind_weights,
            "rng": rng_state(),
            # a plain DataLoader (Retrain (pipeline) called from code) has no state to keep
            "loader_rng": self.train_loader.generator_state() if hasattr(self.train_loader, "generator_state") else None,
            "args": vars(self.args),
        }

    def best_checkpoint(self):
        """`<s>model_SA_best.pth.tar`: the best-validation model and its bookkeeping (no
        optimiser: the resume point is `<s>checkpoint.pth.tar`)."""
        return {
            "state": self.state,
            "epoch": self.best_epoch,
            "state_dict": pruner.compact_state_dict(self.best_weights),
            "best_sa": self.best_sa,
            "args": vars(self.args),
        }

    def write_checkpoints(self):
        """The best model when it changed, then the resume checkpoint (in this order: a resume
        from an older checkpoint re-runs the epochs since, and finds the same best)."""
        a = self.args
        if self.best_unwritten:
            atomic_torch_save(self.best_checkpoint(), best_checkpoint_path(a.save_dir, self.state))
            self.best_unwritten = False
        atomic_torch_save(self.checkpoint(), checkpoint_path(a.save_dir, self.state))
        self.schedule.written()

    def resume(self, path):
        ck = load_checkpoint(path, self.device)
        missing = {"state", "epoch", "state_dict", "optimizer", "scheduler"} - set(ck)
        if missing:
            raise UserError(f"{path} is not a main_imp.py checkpoint (no {', '.join(sorted(missing))})")
        pruner.load_pruned_model(self.model, state_dict_of(ck))
        self.new_optimizer()
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.state, self.epoch = ck["state"], ck["epoch"]
        self.best_sa, self.history = ck.get("best_sa", 0.0), ck.get("result", new_history())
        self.rewind_weights = ck.get("init_weight")
        best = best_checkpoint_path(self.args.save_dir, self.state)
        saved_best = load_checkpoint(best, self.device) if os.path.isfile(best) else None
        self.best_weights = state_dict_of(saved_best) if saved_best is not None else None
        self.best_epoch = saved_best.get("epoch") if saved_best is not None else None
        if "rng" in ck:
            set_rng_state(ck["rng"])
        if ck.get("loader_rng") is not None:
            self.train_loader.set_generator_state(ck["loader_rng"])
        log.info("resumed from %s: state %d, %d epochs done, best val %.2f%%", path, self.state, self.epoch, self.best_sa)

    def train_state(self):
        a = self.args
        log.info("state %d: conv sparsity %.2f%%", self.state, pruner.sparsity(self.model))
        while self.epoch < a.epochs:
            epoch = self.epoch
            lr = self.optimizer.param_groups[0]["lr"]
            stats = train_epoch(
                self.model,
                self.train_loader,
                self.optimizer,
                self.device,
                epoch=epoch,
                warmup_epochs=a.warmup,
                base_lr=a.lr,
                desc=f"state {self.state}",
                amp=a.amp,
                channels_last=a.channels_last,
            )
            if self.state == 0 and epoch + 1 == a.rewind_epoch:
                atomic_torch_save(self.model.state_dict(), rewind_weight_path(a.save_dir, epoch + 1))
                if a.prune_type == "rewind_lt":
                    self.rewind_weights = copy.deepcopy(self.model.state_dict())
            val_acc = evaluate(self.model, self.val_loader)
            self.scheduler.step()
            self.history["train_ta"].append(stats["acc"])
            self.history["val_ta"].append(val_acc)
            is_best = val_acc > self.best_sa
            self.best_sa = max(val_acc, self.best_sa)
            if is_best:
                self.best_weights = {name: value.detach().clone() for name, value in self.model.state_dict().items()}
                self.best_epoch, self.best_unwritten = epoch + 1, True
            self.epoch = epoch + 1
            if self.schedule.due(keep=self.epoch == a.epochs):  # a state's last epoch is always kept
                self.write_checkpoints()
            log.info(
                "state %d epoch %d/%d lr %.4g loss %.4f train %.2f%% val %.2f%% %.1fs (%.0f img/s)",
                self.state, epoch + 1, a.epochs, lr, stats["loss"], stats["acc"], val_acc, stats["seconds"], stats["images_per_s"],
            )  # fmt: skip
            if self.epoch % PLOT_EVERY == 0:
                plot_training_curve(self.history, training_curve_path(a.save_dir, self.state))
        plot_training_curve(self.history, training_curve_path(a.save_dir, self.state))

    def report_state(self):
        """Evaluate the state's best checkpoint on the test and (unaugmented) training sets; returns its summary row."""
        a = self.args
        best_path = best_checkpoint_path(a.save_dir, self.state)
        final_test = evaluate(self.model, self.test_loader)
        # the training images as evaluation sees them (a plain DataLoader: as it gives them)
        train_set = self.train_loader.subset() if hasattr(self.train_loader, "subset") else self.train_loader
        row = {
            "state": self.state,
            "sparsity": pruner.sparsity(self.model),
            "final_test_acc": final_test,
            "checkpoint": os.path.basename(best_path),
        }
        if self.best_weights is not None:
            best = pruner.clone_model(self.model)
            pruner.load_pruned_model(best, self.best_weights)
            val = self.history["val_ta"]
            row.update(
                best_val_acc=max(val) if val else None,
                best_epoch=val.index(max(val)) + 1 if val else None,
                test_acc=evaluate(best, self.test_loader),
                train_acc=evaluate(best, train_set),
            )
        else:
            row.update(best_val_acc=None, best_epoch=None, test_acc=final_test, train_acc=evaluate(self.model, train_set))
        log.info(
            "state %d done: conv sparsity %.2f%%, best val %s, test %.2f%%, train %.2f%% (%s)",
            self.state, row["sparsity"], _pct(row["best_val_acc"]), row["test_acc"], row["train_acc"], row["checkpoint"],
        )  # fmt: skip
        return row

    def prune_and_rewind(self):
        """Prune --rate of the live conv weights, rewind the survivors, restart the schedule."""
        a = self.args
        method = "random" if a.random_prune else "l1"
        mask = pruner.PRUNE_METHODS[method](self.model, pruner.current_mask(self.model), a.rate)
        if self.state == 0:
            self.dense_best_weights = self.best_weights
        if a.prune_type == "pt":
            dense_best = self.dense_best_weights  # None after a resume past state 0: its file is from an earlier job
            self.rewind_weights = dense_best or state_dict_of(load_checkpoint(best_checkpoint_path(a.save_dir, 0), self.device))
        if self.rewind_weights is None:
            raise UserError("no weights to rewind to (the rewind epoch was never reached)")
        pruner.remove_prune(self.model)
        self.model.load_state_dict(pruner.dense_state_dict(self.rewind_weights))
        pruner.apply_mask(self.model, mask)
        self.new_optimizer(advance_epochs=a.rewind_epoch if a.prune_type == "rewind_lt" else 0)
        self.state, self.epoch = self.state + 1, 0
        self.best_sa, self.history, self.best_weights = 0.0, new_history(), None
        self.best_epoch, self.best_unwritten = None, False
        log.info("pruned (%s) to conv sparsity %.2f%%, rewound (%s)", method, pruner.sparsity(mask), a.prune_type)


def _pct(value):
    return "n/a" if value is None else f"{value:.2f}%"


def setup_run(args, splits=None, train_set=None):
    """Device, data, a freshly initialised model (seeded by --train_seed) and its ImpRun.

    `splits` is loaded when not given; `train_set` replaces its training split
    (main_backdoor.py trains on a poisoned copy).
    """
    device = get_device(args.gpu, args.device, args.cudnn_benchmark)
    splits = splits if splits is not None else load_dataset(args)
    setup_seed(args.train_seed)
    model = build_model(args, splits, device)
    train = train_set if train_set is not None else splits.train
    loaders = (
        make_loader(train.to(device), batch_size=args.batch_size, shuffle=True, augment=splits.augment, seed=args.train_seed),
        make_loader(splits.val.to(device), batch_size=args.batch_size),
        make_loader(splits.test.to(device), batch_size=args.batch_size),
    )
    return ImpRun(args, model, loaders, device), splits


def resume_if_asked(run, args):
    """Continue from --checkpoint (or the latest state's checkpoint); True if resumed."""
    if not args.resume:
        return False
    path = args.checkpoint or latest_checkpoint(args.save_dir, args.pruning_times)
    if path:
        run.resume(path)
        return True
    log.info("--resume: no checkpoint in %s, starting from scratch", args.save_dir)
    return False


def run_states(run, args):
    """Train every remaining state, pruning and rewinding between them; returns the summary."""
    summary_file = imp_summary_path(args.save_dir)
    summary = {"args": vars(args), "states": []}
    if run.state > 0 and os.path.isfile(summary_file):
        with open(summary_file) as f:
            summary["states"] = [row for row in json.load(f).get("states", []) if row["state"] < run.state]
    while True:
        run.train_state()
        summary["states"].append(run.report_state())
        atomic_save_json(summary, summary_file)
        if run.state + 1 >= args.pruning_times:
            break
        run.prune_and_rewind()
    for row in summary["states"]:
        print(
            f"state {row['state']}: conv sparsity {row['sparsity']:.2f}%  test accuracy {row['test_acc']:.2f}%  "
            f"train accuracy {row.get('train_acc', float('nan')):.2f}%  ({row['checkpoint']})"
        )
    return summary
