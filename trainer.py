"""The one training loop, the learning-rate schedule, and inference.

`train_epoch` serves dense training, every state of `main_imp.py`, and the
iterative unlearning methods: they differ only in the loader they pass, the sign
of the loss, and an optional penalty.
"""

import logging
import time
import warnings
from functools import partial

import torch
import torch.nn.functional as F
from tqdm import tqdm

import distributed
from errors import UserError
from utils import device_synchronize

log = logging.getLogger("unlearn_sparse")


def parse_milestones(decreasing_lr):
    """`"91,136"` -> [91, 136]."""
    if isinstance(decreasing_lr, (list, tuple)):
        return [int(m) for m in decreasing_lr]
    return [int(m) for m in str(decreasing_lr).split(",") if m.strip()]


def make_optimizer(model, lr, momentum, weight_decay, optimizer_class=None):
    """SGD over the model's parameters, or `optimizer_class` (an SGD-like class, e.g. SAM)."""
    return (optimizer_class or torch.optim.SGD)(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def make_scheduler(optimizer, milestones, advance_epochs=0):
    """Step decay x0.1 at the milestones, optionally advanced (learning-rate rewinding)."""
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    with warnings.catch_warnings():
        # Advancing before any optimizer step is the point here, not a mistake.
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
        for _ in range(advance_epochs):
            scheduler.step()
    return scheduler


def _set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr


def build_model(args, splits, device):
    """The --arch model for the dataset's classes and statistics, on the device, with the speed options."""
    from models import create_model

    model = create_model(args.arch, splits.num_classes, splits.mean, splits.std, args.imagenet_arch).to(device)
    return apply_speed_options(model, args)


def apply_speed_options(model, args):
    """--sync_bn, --channels_last and --compile on a model (in place; state-dict keys unchanged)."""
    if getattr(args, "sync_bn", False) and distributed.active():
        if next(model.parameters()).device.type != "cuda":
            raise UserError("--sync_bn: PyTorch's synchronised batch norm runs on GPUs only; leave it out on the CPU")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if getattr(args, "channels_last", False):
        model.to(memory_format=torch.channels_last)
    # predict and evaluate run the model as training does (trainer.inference_forward)
    model.inference_options = (bool(getattr(args, "amp", False)), bool(getattr(args, "channels_last", False)))
    if getattr(args, "compile", False):
        model.compile()
    return model


def train_epoch(
    model,
    loader,
    optimizer,
    device,
    *,
    epoch=0,
    warmup_epochs=0,
    base_lr=None,
    loss_sign=1.0,
    label_smoothing=0.0,
    penalty=None,
    relabel=None,
    loss_fn=None,
    desc="train",
    amp=False,
    channels_last=False,
):
    """One pass over `loader`. Returns {"loss", "acc" (percent), "seconds", "images_per_s"}.

    loss = loss_sign * cross-entropy (label-smoothed by `label_smoothing`) (+ penalty(model)
    when given), on `relabel(images, labels, share)` when given (share: (start, stop, total),
    where this rank's images sit in the global batch); `loss_fn(logits, images, labels)`
    replaces the cross-entropy term. "acc" counts agreement with the labels trained on.
    During the first `warmup_epochs` epochs the rate rises linearly per step to `base_lr`.
    An optimizer with `second_pass = True` (SAM) gets a closure that recomputes the loss
    and its gradient at the point it moved to. `amp` runs the forward pass in bfloat16
    autocast; `channels_last` converts inputs. Batches of an ordinary DataLoader are moved
    to `device`.
    """
    model.train()
    forward_model = distributed.wrap(model)
    loader = distributed.split_batches(loader)
    steps = len(loader)
    # Under torchrun our loaders know every global batch's size: no collective per step to count it.
    global_sizes = loader.global_batch_sizes() if distributed.active() and hasattr(loader, "global_batch_sizes") else None
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = torch.zeros((), device=device, dtype=torch.long)
    start = time.perf_counter()
    bar = tqdm(loader, total=steps, desc=f"{desc} epoch {epoch}", leave=False, dynamic_ncols=True, disable=distributed.no_progress_bar())
    for step, (images, labels) in enumerate(bar):
        if epoch < warmup_epochs:
            _set_lr(optimizer, base_lr * min(1.0, (epoch * steps + step + 1) / (warmup_epochs * steps)))
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        share = distributed.share_of_global_batch(len(labels), device, global_sizes[step] if global_sizes else None)
        if relabel is not None:
            labels = relabel(images, labels, share)
        loss_of = loss_fn or partial(_cross_entropy, loss_sign=loss_sign, label_smoothing=label_smoothing)
        weight = len(labels)  # of this batch's loss in the epoch's mean
        if distributed.active():
            global_count = share[2]
            loss_of = partial(_share_of_global_batch, loss_of, global_count)
            weight = global_count / distributed.world_size()  # the ranks' scaled losses, so weighted, sum to the batch's
        forward_and_loss = partial(_forward_and_loss, forward_model, images, labels, loss_of, penalty, amp)
        logits, loss = forward_and_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if getattr(optimizer, "second_pass", False):
            optimizer.step(partial(_gradient_again, optimizer, forward_and_loss))
        else:
            optimizer.step()
        total_loss += loss.detach() * weight
        correct += (logits.detach().argmax(1) == labels).sum()
        seen += len(labels)
    device_synchronize(device)
    seconds = time.perf_counter() - start
    if distributed.active():  # the loss and accuracy of the whole epoch, the same on every rank
        total_loss, correct, seen = distributed.all_reduce_sum_(torch.stack([total_loss.double(), correct.double(), seen.double()]))
    seen = int(seen.item())
    result = {
        "loss": total_loss.item() / max(seen, 1),
        "acc": 100.0 * correct.item() / max(seen, 1),
        "seconds": seconds,
        "images_per_s": seen / seconds if seconds > 0 else float("nan"),
    }
    return result


def _cross_entropy(logits, images, labels, loss_sign=1.0, label_smoothing=0.0):
    return loss_sign * F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def _share_of_global_batch(loss_of, global_count, logits, images, labels):
    """This rank's mean loss weighted by its share of the global batch, times the number of ranks.

    DistributedDataParallel averages the ranks' gradients; with these weights the average is
    the gradient of the global batch's mean loss, also when the ranks' shares differ by one.
    """
    return loss_of(logits, images, labels) * (len(labels) * distributed.world_size() / global_count)


def _forward_and_loss(model, images, labels, loss_of, penalty, amp):
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(images)
        loss = loss_of(logits.float(), images, labels)
    if penalty is not None:
        loss = loss + penalty(model)
    return logits, loss


def _gradient_again(optimizer, forward_and_loss):
    """The closure a two-pass optimizer (SAM) calls: the loss and its gradient where the weights are now."""
    optimizer.zero_grad(set_to_none=True)
    loss = forward_and_loss()[1]
    loss.backward()
    return loss


def inference_forward(model, images):
    """The model's float32 logits for a batch, with the speed options it was built with
    (`apply_speed_options`: --amp's bfloat16 autocast, --channels_last inputs)."""
    amp, channels_last = getattr(model, "inference_options", (False, False))
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp):
        return model(images).float()


@torch.no_grad()
def predict(model, loader):
    """Logits and labels for a whole loader, in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    logits, labels = [], []
    for images, target in distributed.batch_block(loader):
        logits.append(inference_forward(model, images.to(device, non_blocking=True)))
        labels.append(target.to(device, non_blocking=True))
    if distributed.shares_batches(loader):  # every rank predicted a block of the batches: all of them, in order, on every rank
        classes = _output_size(model)
        logits = distributed.gather_cat(torch.cat(logits) if logits else torch.empty(0, classes, device=device))
        labels = distributed.gather_cat(torch.cat(labels) if labels else torch.empty(0, dtype=torch.long, device=device))
        return logits, labels
    if not logits:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    return torch.cat(logits), torch.cat(labels)


def _output_size(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1].out_features


class NonFiniteOutputs(Exception):
    """A model gave NaN or infinite logits for `rows` of the `seen` images of a split."""

    def __init__(self, rows, seen, split=None):
        super().__init__(f"{rows} of {seen} images")
        self.rows, self.seen, self.split = rows, seen, split


@torch.no_grad()
def evaluate(model, loader, require_finite=False):
    """Top-1 accuracy in percent over a loader (nan for an empty one). Counts, not logits,
    are kept (and summed over the ranks): ImageNet's retain set has 1.28 billion logits.
    `require_finite`: NonFiniteOutputs when any image's logits are not all finite."""
    model.eval()
    device = next(model.parameters()).device
    counts = torch.zeros(3, dtype=torch.long, device=device)  # correct, seen, non-finite
    for images, target in distributed.batch_block(loader):
        target = target.to(device, non_blocking=True)
        logits = inference_forward(model, images.to(device, non_blocking=True))
        counts[0] += (logits.argmax(1) == target).sum()
        counts[1] += len(target)
        counts[2] += (~torch.isfinite(logits).all(dim=1)).sum()
    correct, seen, non_finite = distributed.sum_over_ranks_([counts], loader)[0].cpu().float()
    if require_finite and non_finite:
        raise NonFiniteOutputs(int(non_finite), int(seen))
    if seen == 0:
        return float("nan")
    return 100.0 * (correct / seen).item()  # float32 on the CPU: bit for bit the CPU mean of a float32 tensor of hits


def validate(val_loader, model, criterion=None, args=None):
    """The original's name for `evaluate` (accuracy in percent)."""
    return evaluate(model, val_loader)


def plot_training_curve(history, path):
    """Train and val accuracy per epoch, written atomically to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from checkpoints import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("train_ta", "train acc"), ("val_ta", "val acc"), ("test_ta", "test acc")):
        if history.get(key):
            ax.plot(range(1, len(history[key]) + 1), history[key], label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.legend()
    ax.grid(alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
