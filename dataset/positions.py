"""Positions in the training split, as a user gives them (--indexes_to_replace, --train_positions)."""

import os

import numpy as np

from errors import UserError


def parse_indexes(value, option="--indexes_to_replace"):
    """Explicit positions: a list, "3,17,42", or a path to a .txt / .npy file."""
    if value is None:
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        return np.asarray(value, dtype=np.int64)
    text = str(value).strip()
    if os.path.isfile(text):
        if text.endswith(".npy"):
            return np.asarray(np.load(text, allow_pickle=False), dtype=np.int64).ravel()
        with open(text) as f:
            text = f.read()
    elif text.endswith((".npy", ".txt")):
        raise UserError(f"{option}: file not found: {text}")
    try:
        return np.array([int(tok) for tok in text.replace(",", " ").split()], dtype=np.int64)
    except ValueError:
        raise UserError(f"{option}: expected comma-separated integers or a .txt/.npy file, got {value!r}") from None


def checked_positions(positions, n_train, option):
    """`positions` sorted, after checking that they are some, each once, within the training split."""
    if len(positions) == 0:
        raise UserError(f"{option} is empty")
    if positions.min() < 0 or positions.max() >= n_train:
        raise UserError(f"{option}: positions must be in [0, {n_train - 1}] (the training split has {n_train} images)")
    if len(np.unique(positions)) != len(positions):
        raise UserError(f"{option} lists a position more than once")
    return np.sort(positions)
