"""retrain_sam: Retrain with sharpness-aware minimisation (the original's `retrain_sam` with its SAM.py).

Each step takes SAM's two passes (Foret et al., 2021), in the adaptive form (ASAM,
Kwon et al., 2021) with rho = 2, as the original: from the gradient g at w,
e = rho * w^2 * g / ||w * g||_2 (over all parameters); the gradient at w + e then makes an
ordinary SGD step (momentum, weight decay) from w. SGD's rate is --unlearn_lr with the
--decreasing_lr schedule, and its momentum runs across epochs (see docs/differences.md:
the original rebuilt the optimizer every epoch at --lr).
"""

import torch

from .loop import iterative_unlearn
from .method import Method

SAM_RHO = 2.0


class SAM(torch.optim.SGD):
    """SGD whose step needs a closure: the loss and gradient recomputed at w + e(w)."""

    second_pass = True  # trainer.train_epoch hands step() that closure

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, rho=SAM_RHO, adaptive=True):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.rho, self.adaptive = rho, adaptive

    def step(self, closure):
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        with torch.no_grad():
            scaled = [p.abs() * p.grad if self.adaptive else p.grad for p in params]
            scale = self.rho / (torch.linalg.vector_norm(torch.stack([s.norm(2) for s in scaled])) + 1e-12)
            start = [p.detach().clone() for p in params]
            for p in params:  # climb to the local maximum w + e(w)
                p.add_((p.pow(2) if self.adaptive else 1.0) * p.grad * scale)
        with torch.enable_grad():
            loss = closure()
        with torch.no_grad():
            for p, w in zip(params, start):
                p.copy_(w)
        super().step()  # the sharpness-aware update from w
        return loss


def retrain_sam(data_loaders, model, criterion, args):
    return iterative_unlearn(data_loaders, model, args, loader="retain", optimizer_class=SAM, name="retrain_sam")


METHOD = Method(
    "retrain_sam",
    retrain_sam,
    "retrain_sam",
    "Retrain with sharpness-aware minimisation (adaptive, rho 2)",
    iterative=True,
    from_scratch=True,
)
