"""SCRUB (Kurmanji et al., NeurIPS 2023), as SCRUB's `train_distill` loop.

The unlearned model (the student) starts as the loaded model, which stays frozen as the
teacher (eval mode). Each epoch, first, for the first --msteps epochs only, one pass over
the forget set (batches of --forget_batch_size) maximising KL(teacher || student) at
temperature --kd_T; then one pass over the retain set (batches of --batch_size) minimising
--scrub_gamma * CE + --scrub_alpha * KL(teacher || student). KL is SCRUB's DistillKL:
sum over the batch of KL(softmax(t / T) || softmax(s / T)) * T^2 / batch size. One SGD
optimizer serves both passes; the student trains in train mode.

As SCRUB's code ran it (meghdadk/SCRUB, large_scale_unlearning.ipynb, which the SCRUB
paper's large-scale CIFAR results come from): cell 28 builds the forget loader with batch
size 512 and the retain loader with 256 (this project's --batch_size default), both from
data made with `augment=False` (no training augmentation: SCRUB sees both sets as the test
transform does); cell 32 sets gamma 0.99, alpha 0.001, msteps 2, kd_T 4, 3 epochs at lr
5e-4 (its decay epochs 3, 5, 9 are never reached), momentum 0.9, weight decay 5e-4 (the
`sgda_batch_size = 128` and `del_batch_size = 32` set there build no loader SCRUB uses);
cell 36 runs the max pass before the min pass within an epoch. Left out, --unlearn_lr,
--unlearn_epochs and the options below take those values.
"""

import math

import torch
import torch.nn.functional as F

import pruner
from dataset import with_batch_size
from options import Option

from .loop import Pass, iterative_unlearn
from .method import Method

# The options shared with the other methods that SCRUB sets when they are left out.
SCRUB_LR, SCRUB_EPOCHS = 5e-4, 3


def distill_kl(student_logits, teacher_logits, temperature):
    """SCRUB's DistillKL: KL(teacher || student) at temperature T, times T^2, per sample."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    p_teacher = F.softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_student, p_teacher, reduction="sum") * temperature**2 / len(student_logits)


def SCRUB(data_loaders, model, criterion, args):
    teacher = pruner.clone_model(model).eval().requires_grad_(False)

    def kl_to_teacher(logits, images):
        with torch.no_grad():
            teacher_logits = teacher(images).float()
        return distill_kl(logits, teacher_logits, args.kd_T)

    def maximise(logits, images, labels):
        return -kl_to_teacher(logits, images)

    def minimise(logits, images, labels):
        return args.scrub_gamma * F.cross_entropy(logits, labels) + args.scrub_alpha * kl_to_teacher(logits, images)

    # As SCRUB's notebook: its own batch sizes, no training augmentation.
    loaders = {
        **data_loaders,
        "forget (max)": with_batch_size(data_loaders["forget"], args.forget_batch_size, augment=False),
        "retain (min)": with_batch_size(data_loaders["retain"], args.batch_size, augment=False),
    }
    max_pass, min_pass = Pass("forget (max)", loss_fn=maximise), Pass("retain (min)", loss_fn=minimise)

    def passes(epoch):
        return [max_pass, min_pass] if epoch < args.msteps else [min_pass]

    return iterative_unlearn(loaders, model, args, passes=passes, name="SCRUB")


def non_negative(flag):
    return lambda v: None if math.isfinite(v) and v >= 0 else f"{flag} {v:g}: must be a finite number, 0 or more"


METHOD = Method(
    "SCRUB",
    SCRUB,
    "SCRUB",
    "the model distilled from itself: away on the forget set, towards it on the retain set (Kurmanji et al., 2023)",
    iterative=True,
    defaults={"unlearn_lr": SCRUB_LR, "unlearn_epochs": SCRUB_EPOCHS},
    options=(
        Option(
            "msteps",
            2,
            "SCRUB: epochs that start with a pass away from the teacher on the forget set",
            type=int,
            check=lambda v: None if v >= 0 else f"--msteps {v}: must be 0 or more",
        ),
        Option(
            "kd_T",
            4.0,
            "SCRUB: distillation temperature",
            check=lambda v: None if math.isfinite(v) and v > 0 else f"--kd_T {v:g}: the temperature must be positive",
        ),
        Option("scrub_gamma", 0.99, "SCRUB: weight of the retain set's cross-entropy", check=non_negative("--scrub_gamma")),
        Option("scrub_alpha", 0.001, "SCRUB: weight of the retain set's KL to the teacher", check=non_negative("--scrub_alpha")),
        Option(
            "forget_batch_size",
            512,
            "SCRUB: batch size of the pass over the forget set (SCRUB's notebook: 512; the retain set's is --batch_size, 256 there)",
            type=int,
            check=lambda v: None if v >= 1 else f"--forget_batch_size {v}: must be at least 1",
        ),
    ),
)
