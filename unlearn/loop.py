"""The one loop of the iterative methods: epochs of passes over loaders, with per-epoch checkpoints.

An unlearning run keeps `<method>checkpoint.pth.tar` in --save_dir. While an iterative
method runs it holds, after an epoch (every epoch once --checkpoint_every_s seconds have
passed since the last write; every epoch with 0), everything needed to continue exactly (weights
and mask, optimizer, scheduler, RNG states, the loader's generator, the seconds spent)
under "progress"; once the method is done it holds the unlearned model and the
evaluation so far (written by `unlearning_run.py`). `--resume` continues from either.
Resume, SIGTERM, the RTE and the NaN guard come with the loop to every method written on it.
"""

import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch

import pruner
from checkpoints import DEFAULT_CHECKPOINT_EVERY_S, CheckpointSchedule, atomic_torch_save, load_checkpoint, state_dict_of
from trainer import make_optimizer, make_scheduler, parse_milestones, train_epoch
from utils import rng_state, set_rng_state

log = logging.getLogger("unlearn_sparse")


class EpochCheckpoints:
    """Per-epoch checkpoints of the iterative methods: where they go, and where to continue from."""

    def __init__(self, path, result, saved=None, every_s=DEFAULT_CHECKPOINT_EVERY_S):
        self.path, self.result = path, result
        self.schedule = CheckpointSchedule(every_s)
        self.saved = saved  # the "progress" of an interrupted run, or None
        self.seconds_before = saved["seconds"] if saved else 0.0
        self.seconds_saving = 0.0
        self.start = time.perf_counter()

    def load_weights(self, model):
        """The interrupted run's weights (and mask) into `model`."""
        pruner.load_pruned_model(model, self.saved["state_dict"])

    def resume(self, optimizer, scheduler, loaders):
        """The epoch to continue from (0 for a fresh run), restoring the saved states."""
        if not self.saved:
            return 0
        optimizer.load_state_dict(self.saved["optimizer"])
        scheduler.load_state_dict(self.saved["scheduler"])
        set_rng_state(self.saved["rng"])
        states = self.saved.get("loader_rngs") or {"retain": self.saved.get("loader_rng")}
        for name, state in states.items():
            if name in loaders and state is not None:
                loaders[name].set_generator_state(state)
        return self.saved["epoch"]

    def save(self, model, optimizer, scheduler, loaders, epochs_done):
        begin = time.perf_counter()
        progress = {
            "epoch": epochs_done,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(),
            "loader_rngs": {name: loader.generator_state() for name, loader in loaders.items()},
            "seconds": self.seconds_before + begin - self.start - self.seconds_saving,
        }
        state = {"state_dict": pruner.compact_state_dict(model.state_dict()), "evaluation_result": self.result, "progress": progress}
        atomic_torch_save(state, self.path)
        self.schedule.written()
        self.seconds_saving += time.perf_counter() - begin

    def save_if_due(self, model, optimizer, scheduler, loaders, epochs_done):
        if self.schedule.due():
            self.save(model, optimizer, scheduler, loaders, epochs_done)


_checkpoints = None  # the EpochCheckpoints of the run in progress (set by epoch_checkpoints)


@contextmanager
def epoch_checkpoints(path, result, progress=None, every_s=DEFAULT_CHECKPOINT_EVERY_S):
    """Per-epoch checkpoints in `path` for the method run inside, continuing `progress` when
    given, written when `every_s` seconds have passed since the last.

    Yields the EpochCheckpoints, whose `seconds_before` and `seconds_saving` correct the RTE.
    """
    global _checkpoints
    _checkpoints = EpochCheckpoints(path, result, progress, every_s)
    try:
        yield _checkpoints
    finally:
        _checkpoints = None


@dataclass
class Pass:
    """One pass of an epoch over `data_loaders[loader]`, one optimizer step per batch.

    The loss is loss_sign * cross-entropy (label-smoothed by `label_smoothing`) on
    `relabel(images, labels, share)` when given (share: where this rank's images sit in the
    global batch), else on the labels; `loss_fn(logits, images,
    labels)` replaces it altogether; `penalty(model)` is added.
    """

    loader: str = "retain"
    loss_sign: float = 1.0
    label_smoothing: float = 0.0
    penalty: Callable | None = None
    relabel: Callable | None = None
    loss_fn: Callable | None = None


def iterative_unlearn(
    data_loaders,
    model,
    args,
    *,
    loader="retain",
    loss_sign=1.0,
    label_smoothing=0.0,
    penalty_at=None,
    passes=None,
    before_epoch=None,
    optimizer_class=None,
    generators=None,
    name="unlearn",
):
    """Run `--unlearn_epochs` epochs of SGD(`--unlearn_lr`); returns the model.

    Each epoch is `passes(epoch)` (a list of Pass), by default one pass over
    `data_loaders[loader]` with loss = loss_sign * cross-entropy (label-smoothed by
    `label_smoothing`) plus penalty_at(epoch)(model) when given. `before_epoch(epoch,
    model)` runs before each epoch; `optimizer_class(params, lr, momentum, weight_decay)`
    replaces plain SGD; `generators` ({name: torch.Generator}) are the method's own random
    streams, kept in the checkpoints with the loaders'. The rate decays x0.1 at the `--decreasing_lr` milestones, as in
    training. With `--rewind_epoch k` (k > 0) and `--rewind_pth`, the model first takes
    the weights in --rewind_pth under its own mask and the schedule starts k epochs in (the
    original's `_iterative_unlearn_impl`). An interrupted run's weights are loaded here,
    after the method has set up what it keeps of the model it was given (a teacher, a
    frozen copy, the weights it must not move).
    """
    if passes is None:

        def passes(epoch):
            return [Pass(loader, loss_sign, label_smoothing, penalty_at(epoch) if penalty_at else None)]

    device = next(model.parameters()).device
    checkpoints = _checkpoints
    resuming = bool(checkpoints and checkpoints.saved)
    advance = 0
    if getattr(args, "rewind_epoch", 0) and getattr(args, "rewind_pth", None):
        advance = args.rewind_epoch
        if not resuming:  # a resumed run has its weights from the epoch checkpoint
            rewind_to(model, args.rewind_pth, device)
            log.info("%s starts from %s (under the mask), schedule advanced %d epochs", name, args.rewind_pth, advance)
    if resuming:
        checkpoints.load_weights(model)
    optimizer = make_optimizer(model, args.unlearn_lr, args.momentum, args.weight_decay, optimizer_class)
    scheduler = make_scheduler(optimizer, parse_milestones(args.decreasing_lr), advance_epochs=advance)
    # The loaders whose shuffling and augmentation a checkpoint must restore.
    seeded = {key: value for key, value in data_loaders.items() if hasattr(value, "generator_state")}
    seeded.update({f"generator {key}": SavedGenerator(g) for key, g in (generators or {}).items()})
    first = checkpoints.resume(optimizer, scheduler, seeded) if checkpoints else 0
    if first:
        log.info("--resume: %s continues after epoch %d/%d", name, first, args.unlearn_epochs)
    for epoch in range(first, args.unlearn_epochs):
        if before_epoch is not None:
            before_epoch(epoch, model)
        lr = optimizer.param_groups[0]["lr"]
        for part in passes(epoch):
            stats = train_epoch(
                model,
                data_loaders[part.loader],
                optimizer,
                device,
                epoch=epoch,
                warmup_epochs=args.warmup,
                base_lr=args.unlearn_lr,
                loss_sign=part.loss_sign,
                label_smoothing=part.label_smoothing,
                penalty=part.penalty,
                relabel=part.relabel,
                loss_fn=part.loss_fn,
                desc=f"{name} {part.loader}",
                amp=getattr(args, "amp", False),
                channels_last=getattr(args, "channels_last", False),
            )
            log.info(
                "%s epoch %d/%d%s lr %.4g loss %.4f acc %.2f%% %.1fs",
                name, epoch + 1, args.unlearn_epochs, "" if part.loader == loader else f" ({part.loader})",
                lr, stats["loss"], stats["acc"], stats["seconds"],
            )  # fmt: skip
        scheduler.step()
        check_finite(model)  # stop at the first epoch that diverges; never checkpoint NaN
        if checkpoints and epoch + 1 < args.unlearn_epochs:  # after the last, the finished model is written
            checkpoints.save_if_due(model, optimizer, scheduler, seeded, epoch + 1)
    return model


class SavedGenerator:
    """A torch.Generator with a loader's interface for checkpoints (generator_state / set_generator_state)."""

    def __init__(self, generator):
        self.generator = generator

    def generator_state(self):
        return self.generator.get_state()

    def set_generator_state(self, state):
        self.generator.set_state(state.cpu())


def rewind_to(model, path, device):
    """Give the model the weights in `path` (dense or pruned), keeping its own mask."""
    pruner.load_weights_under_mask(model, state_dict_of(load_checkpoint(path, device, what="--rewind_pth checkpoint")))


class NonFiniteWeights(Exception):
    """The weights stopped being finite (the unlearning run names the method's settings to lower)."""

    def __init__(self, tensor_name):
        super().__init__(tensor_name)
        self.tensor_name = tensor_name


def check_finite(model):
    """NonFiniteWeights naming the first tensor of `model` that holds a NaN or an infinity."""
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise NonFiniteWeights(bad[0])
