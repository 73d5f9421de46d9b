"""NegGrad+ (Kurmanji et al., NeurIPS 2023: the SCRUB paper's strong baseline), as SCRUB's `train_negrad` runs it.

Each epoch is one pass over the retain set; each retain batch is paired with the next batch
of the forget set, which repeats as often as the retain set needs (`zip(train_loader,
cycle(delete_loader))`: a new cycle every epoch, the forget batches in the order of the
epoch's first pass). One SGD step per pair on

    loss = beta * CE(retain batch) - (1 - beta) * CE(forget batch),

each batch through the model in train mode, in its own forward pass.

As SCRUB's code ran it on CIFAR-10 (meghdadk/SCRUB, `thirdparty/repdistiller/helper/loops.py`
`train_negrad`, its loss on line 41; `MIA_experiments.ipynb` cell 16 `negative_grad`: plain
SGD, no momentum, no weight decay, no schedule; cell 22: `ng_alpha` 0.9999, `ng_epochs` 5,
`ng_lr` 0.01, `forget_bs` 16, `retain_bs` 32). Left out, --unlearn_lr, --unlearn_epochs,
--momentum and --weight_decay take those values; --neggrad_beta is its `ng_alpha`,
--neggrad_forget_batch_size its `forget_bs`; the retain batches are --batch_size (32 there).
"""

import itertools
import math

import torch
import torch.nn.functional as F

import distributed
from dataset import with_batch_size
from errors import UserError
from options import Option

from .loop import Pass, iterative_unlearn
from .method import Method

NEGGRAD_LR, NEGGRAD_EPOCHS, NEGGRAD_BETA, NEGGRAD_FORGET_BATCH = 0.01, 5, 0.9999, 16


def NegGrad_plus(data_loaders, model, criterion, args):
    if distributed.active():  # the forget batch's forward pass runs beside DistributedDataParallel's
        raise UserError("--unlearn NegGrad_plus runs in one process: run it without torchrun")
    beta = args.neggrad_beta
    paired = with_batch_size(data_loaders["forget"], args.neggrad_forget_batch_size)
    loaders = {**data_loaders, "forget (paired)": paired}  # its shuffling is checkpointed with the others'
    cycle = {}

    def new_cycle(epoch, model):
        cycle["forget"] = itertools.cycle(paired)

    def loss(logits, images, labels):
        forget_images, forget_labels = next(cycle["forget"])
        forget_images = forget_images.to(images.device, non_blocking=True)
        forget_labels = forget_labels.to(labels.device, non_blocking=True)
        if getattr(args, "channels_last", False):
            forget_images = forget_images.contiguous(memory_format=torch.channels_last)
        forget_logits = model(forget_images).float()  # within the retain batch's autocast, as its forward pass
        return beta * F.cross_entropy(logits, labels) - (1 - beta) * F.cross_entropy(forget_logits, forget_labels)

    return iterative_unlearn(loaders, model, args, passes=lambda epoch: [Pass("retain", loss_fn=loss)], before_epoch=new_cycle,
                             name="NegGrad+")  # fmt: skip


METHOD = Method(
    "NegGrad_plus",
    NegGrad_plus,
    "NegGrad+",
    "NegGrad+: descent on the retain set, ascent on the forget set, in paired batches, weighted beta and 1 - beta (Kurmanji et al., 2023)",
    iterative=True,
    defaults={"unlearn_lr": NEGGRAD_LR, "unlearn_epochs": NEGGRAD_EPOCHS, "momentum": 0.0, "weight_decay": 0.0},
    options=(
        Option(
            "neggrad_beta",
            NEGGRAD_BETA,
            "NegGrad+: weight of the retain set's cross-entropy (the forget set's gets 1 - beta; SCRUB's ng_alpha)",
            check=lambda v: None if math.isfinite(v) and 0 <= v <= 1 else f"--neggrad_beta {v:g}: must be between 0 and 1",
        ),
        Option(
            "neggrad_forget_batch_size",
            NEGGRAD_FORGET_BATCH,
            "NegGrad+: batch size of the forget set, paired with each retain batch (SCRUB's forget_bs)",
            type=int,
            check=lambda v: None if v >= 1 else f"--neggrad_forget_batch_size {v}: must be at least 1",
        ),
    ),
)
