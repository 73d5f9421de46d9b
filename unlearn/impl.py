"""What the iterative methods share: one optimiser, one schedule, the one training loop."""

import logging
import time

import torch
from torch import nn

import pruner
from trainer import make_optimizer, make_scheduler, parse_milestones, train_epoch
from utils import UserError, atomic_torch_save, device_synchronize, load_checkpoint, setup_seed, state_dict_of, unlearn_checkpoint_path

log = logging.getLogger("unlearn_sparse")


def iterative_unlearn(data_loaders, model, args, *, loader="retain", loss_sign=1.0, penalty_at=None, name="unlearn"):
    """Run `--unlearn_epochs` epochs of SGD(`--unlearn_lr`) over `data_loaders[loader]`.

    loss = loss_sign * cross-entropy (+ penalty_at(epoch)(model) when given). The rate
    decays x0.1 at the `--decreasing_lr` milestones, as in training.
    """
    device = next(model.parameters()).device
    optimizer = make_optimizer(model, args.unlearn_lr, args.momentum, args.weight_decay)
    scheduler = make_scheduler(optimizer, parse_milestones(args.decreasing_lr))
    for epoch in range(args.unlearn_epochs):
        lr = optimizer.param_groups[0]["lr"]
        penalty = penalty_at(epoch) if penalty_at is not None else None
        stats = train_epoch(
            model,
            data_loaders[loader],
            optimizer,
            device,
            epoch=epoch,
            warmup_epochs=args.warmup,
            base_lr=args.unlearn_lr,
            loss_sign=loss_sign,
            penalty=penalty,
            desc=name,
            amp=getattr(args, "amp", False),
            channels_last=getattr(args, "channels_last", False),
        )
        scheduler.step()
        log.info(
            "%s epoch %d/%d lr %.4g loss %.4f acc %.2f%% %.1fs",
            name, epoch + 1, args.unlearn_epochs, lr, stats["loss"], stats["acc"], stats["seconds"],
        )  # fmt: skip
    return model


def check_finite(model, args):
    """UserError naming the method and its strength when the weights are no longer finite."""
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        settings = []
        if args.unlearn in ("fisher_new", "wfisher", "FT_prune"):
            settings.append(f"--alpha {args.alpha:g}")
        if args.unlearn not in ("fisher_new", "wfisher"):
            settings.append(f"--unlearn_lr {args.unlearn_lr:g}")
        options = " or ".join(s.split()[0] for s in settings)
        raise UserError(
            f"{args.unlearn} with {' '.join(settings)} made the weights non-finite ({bad[0]}); "
            f"rerun with a smaller {options}. No results were written."
        )


def run_unlearning(method, data_loaders, model, args, device):
    """Run `method` seeded by --seed; returns its wall-clock seconds (the RTE, nothing else timed).

    Checks afterwards that the weights are finite and the mask is the one it was given.
    """
    input_mask = pruner.current_mask(model)
    setup_seed(args.seed)
    device_synchronize(device)
    start = time.perf_counter()
    method(data_loaders, model, nn.CrossEntropyLoss(), args)
    device_synchronize(device)
    seconds = time.perf_counter() - start
    check_finite(model, args)
    after = pruner.current_mask(model)
    if any(not torch.equal(input_mask[k], after[k]) for k in input_mask):
        raise RuntimeError(f"{args.unlearn} changed the mask: this is a bug, please report it")
    return seconds


def save_unlearn_checkpoint(model, result, save_dir, method):
    """`<method>checkpoint.pth.tar`: the unlearned model and its evaluation so far."""
    atomic_torch_save({"state_dict": model.state_dict(), "evaluation_result": result}, unlearn_checkpoint_path(save_dir, method))


def load_unlearn_checkpoint(model, save_dir, method, device):
    """Load `<method>checkpoint.pth.tar` into `model` (mask, then weights); its evaluation so far."""
    path = unlearn_checkpoint_path(save_dir, method)
    saved = load_checkpoint(path, device)
    pruner.load_pruned_model(model, state_dict_of(saved))
    log.info("--resume: %s holds the unlearned model; skipping unlearning", path)
    return dict(saved.get("evaluation_result") or {})
