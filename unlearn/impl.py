"""What the iterative methods share: one optimiser, one schedule, the one training loop."""

import logging

from trainer import make_optimizer, make_scheduler, parse_milestones, train_epoch

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
        )
        scheduler.step()
        log.info(
            "%s epoch %d/%d lr %.4g loss %.4f acc %.2f%% %.1fs",
            name, epoch + 1, args.unlearn_epochs, lr, stats["loss"], stats["acc"], stats["seconds"],
        )  # fmt: skip
    return model
