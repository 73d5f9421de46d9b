"""Forget sets (docs/algorithms.md §3): which training images a run unlearns, and the index
arrays of retain / forget / val / test it evaluates on."""

from dataclasses import dataclass

import numpy as np

from errors import UserError

from .positions import checked_positions, parse_indexes


@dataclass
class ForgetSet:
    positions: np.ndarray  # sorted positions in the training split
    whole_class: int | None  # the class forgotten entirely (class-wise forgetting), else None


def select_forget_set(train_labels, class_to_replace=0, num_indexes_to_replace=None, indexes_to_replace=None, seed=2):
    """The forget set's positions in the training split (docs/algorithms.md §3).

    Drawn as the original drew it (numpy RandomState(seed - 1)), so a seed gives the
    same positions on every machine.
    """
    labels = np.asarray(train_labels)
    n_train = len(labels)
    explicit = parse_indexes(indexes_to_replace)
    if explicit is not None:
        return ForgetSet(checked_positions(explicit, n_train, "--indexes_to_replace"), None)

    n = num_indexes_to_replace
    if class_to_replace is None:
        class_to_replace = 0
    if class_to_replace == -1:
        if n is None:
            raise UserError("--class_to_replace -1 (random forgetting) needs --num_indexes_to_replace")
        candidates = np.arange(n_train)
    else:
        num_classes = int(labels.max()) + 1
        if not 0 <= class_to_replace < num_classes:
            raise UserError(f"--class_to_replace {class_to_replace}: classes are 0..{num_classes - 1}, or -1 for random forgetting")
        candidates = np.flatnonzero(labels == class_to_replace)
    if n is not None and not 0 < n <= len(candidates):
        where = "the training split" if class_to_replace == -1 else f"class {class_to_replace}"
        raise UserError(f"--num_indexes_to_replace {n}: {where} has {len(candidates)} training images; ask for 1..{len(candidates)}")
    whole_class = class_to_replace if class_to_replace >= 0 and (n is None or n == len(candidates)) else None
    if n is None:
        return ForgetSet(candidates.astype(np.int64), whole_class)
    rng = np.random.RandomState(seed - 1)
    return ForgetSet(np.sort(rng.choice(candidates, size=n, replace=False)).astype(np.int64), whole_class)


def unlearning_positions(splits, forget):
    """Index arrays for retain / forget (into train) and val / test.

    Forget and retain partition the training split; under class-wise forgetting the
    forgotten class is removed from val and test.
    """
    retain = np.setdiff1d(np.arange(len(splits.train)), forget.positions)
    val = np.arange(len(splits.val))
    test = np.arange(len(splits.test))
    if forget.whole_class is not None:
        val = np.flatnonzero(splits.val.labels.cpu().numpy() != forget.whole_class)
        test = np.flatnonzero(splits.test.labels.cpu().numpy() != forget.whole_class)
    return {"retain": retain, "forget": forget.positions, "val": val, "test": test}
