"""What a dataset file declares about its dataset: one record, read by the registry
(`dataset/__init__.py`), `arg_parser.py` (the --dataset choices and help, the dataset's own
options and their checks) and the runs (what they must know before loading the data).

A dataset is `load(args)`, which returns its `Splits` (`dataset/splits.py`); the size caps
and --train_positions are applied by `load_dataset` for every dataset alike.
"""

from collections.abc import Callable
from dataclasses import dataclass

from options import Option


@dataclass(frozen=True)
class Dataset:
    """One dataset and its facts, written once."""

    name: str  # --dataset's value
    load: Callable  # (args) -> Splits
    help: str  # one line for --help and the docs: what it is and where it is read from
    classes: int | None  # known before loading (None: counted in its folders)
    side: int | None  # the side of the square images the model sees (None: set by an option, `side_option`)
    streamed: bool = False  # read from disk batch by batch (dataset/folders.py), else held in memory as uint8 tensors
    trigger_value: int = 0  # the backdoor trigger's pixel value: black (0), as the original; white on black backgrounds
    # The shadow attacks' members and non-members: each drawn at random, at most this many (None: as the original, all)
    mia_samples: int | None = None
    options: tuple[Option, ...] = ()  # the dataset's own options
    side_option: str | None = None  # the option (args attribute) that sets the side when `side` is None

    def image_side(self, args):
        """The side of the images the model sees, for these options."""
        return self.side if self.side is not None else getattr(args, self.side_option)
