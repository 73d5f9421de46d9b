"""Boundary expanding (Chen et al., CVPR 2023), as SalUn's `unlearn/boundary_ex.py`.

The classifier (the last linear layer) gains one output, a new class; the forget set is
trained into it (cross-entropy with every label set to that class, the iterative methods'
SGD), then the extra output is removed, so the unlearned model has the usual keys and
shapes and the forget samples fall to whichever real class comes next.
"""

import torch
from torch import nn

from .loop import Pass, iterative_unlearn
from .method import Method


def last_linear(model):
    """(parent module, attribute name, layer) of the model's last nn.Linear."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            found = name, module
    if found is None:
        raise ValueError("boundary_expanding needs a model whose classifier is an nn.Linear")
    name, layer = found
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    return parent, name.rpartition(".")[2], layer


def resize_classifier(model, outputs):
    """Give the classifier `outputs` outputs, keeping the weights of the ones it had (new ones freshly initialised)."""
    parent, attribute, old = last_linear(model)
    new = nn.Linear(old.in_features, outputs, bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype)
    kept = min(outputs, old.out_features)
    with torch.no_grad():
        new.weight[:kept] = old.weight[:kept]
        if old.bias is not None:
            new.bias[:kept] = old.bias[:kept]
    setattr(parent, attribute, new)


def boundary_expanding(data_loaders, model, criterion, args):
    num_classes = last_linear(model)[2].out_features
    resize_classifier(model, num_classes + 1)

    def to_new_class(images, labels, share):
        return torch.full_like(labels, num_classes)

    iterative_unlearn(data_loaders, model, args, passes=lambda epoch: [Pass("forget", relabel=to_new_class)], name="boundary_expanding")
    resize_classifier(model, num_classes)
    return model


METHOD = Method(
    "boundary_expanding",
    boundary_expanding,
    "Boundary expanding",
    "train the forget set into an extra class, then remove it (Chen et al., 2023)",
    iterative=True,
)
