"""retrain_ls: Retrain with label smoothing 0.1 (the original's `retrain_ls` with its LS.py).

loss = (1 - eps) * CE + eps * mean over classes of -log p_c, eps = 0.1: what
`F.cross_entropy(..., label_smoothing=0.1)` computes.
"""

from .loop import iterative_unlearn
from .method import Method

LABEL_SMOOTHING = 0.1


def retrain_ls(data_loaders, model, criterion, args):
    return iterative_unlearn(data_loaders, model, args, loader="retain", label_smoothing=LABEL_SMOOTHING, name="retrain_ls")


METHOD = Method("retrain_ls", retrain_ls, "retrain_ls", "Retrain with label smoothing 0.1", iterative=True, from_scratch=True)
