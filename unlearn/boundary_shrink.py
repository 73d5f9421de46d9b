"""Boundary shrink (Chen et al., CVPR 2023), as SalUn's `unlearn/boundary_sh.py`.

A frozen copy of the loaded model (eval mode) relabels each forget batch: one FGSM step
of size 0.1 on the image (the sign of the gradient of the copy's cross-entropy, clamped to
[0, 1] and rounded to 1/255), and the class the copy predicts for the perturbed image is
the new label, the nearest wrong class where the attack succeeds. The model is
fine-tuned on the forget set with those labels (cross-entropy, the iterative methods'
SGD).
"""

import torch
import torch.nn.functional as F

import pruner

from .loop import Pass, iterative_unlearn
from .method import Method

FGSM_BOUND = 0.1  # hard-coded in the paper and in SalUn's code


def fgsm(model, images, labels, bound=FGSM_BOUND):
    """One signed-gradient step of size `bound` on the images, clamped to [0, 1] and rounded to 1/255."""
    with torch.enable_grad():
        x = images.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x), labels), x)
    return torch.round((images + bound * grad.sign()).clamp(0.0, 1.0) * 255) / 255


def nearest_wrong_labels(frozen):
    """relabel(images, labels, share): what `frozen` predicts for the FGSM-perturbed images."""

    def relabel(images, labels, share):
        adversarial = fgsm(frozen, images, labels)
        with torch.no_grad():
            return frozen(adversarial).argmax(dim=1)

    return relabel


def boundary_shrink(data_loaders, model, criterion, args):
    frozen = pruner.clone_model(model).eval().requires_grad_(False)
    return iterative_unlearn(data_loaders, model, args, passes=lambda epoch: [Pass("forget", relabel=nearest_wrong_labels(frozen))],
                             name="boundary_shrink")  # fmt: skip


METHOD = Method(
    "boundary_shrink",
    boundary_shrink,
    "Boundary shrink",
    "fine-tune the forget set on the labels of its nearest wrong class, by FGSM (Chen et al., 2023)",
    iterative=True,
)
