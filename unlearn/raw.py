"""raw: no unlearning. The model is evaluated as loaded: the "Original" row of a table."""

from .method import ORIGINAL, Method


def raw(data_loaders, model, criterion, args):
    return model


METHOD = Method("raw", raw, "Original", "Original: no unlearning, the model evaluated as loaded", iterative=False, role=ORIGINAL)
