"""What a method file declares about its method: one record, read by the registry,
`arg_parser.py` (choices, help, defaults), the unlearning run and `workflow/summarize.py`.

A method is `run(data_loaders, model, criterion, args)`, as in the original code: it
changes `model` in place and returns it. Its record says what else there is to know.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from options import Option

# What a method is in a study (workflow/ reads it; no method's name is written there):
REFERENCE = "reference"  # exact unlearning: every gap is measured against its runs (Retrain)
ORIGINAL = "original"  # no unlearning: the starting point, its row shown first and without a gap (the Original)
EXACT_REFERENCE = "exact reference"  # another exact reference, compared with the reference in a section of its own
CONTENDER = "contender"  # an approximate method: its gaps are tabled and compared across models
ROLES = (REFERENCE, ORIGINAL, EXACT_REFERENCE, CONTENDER)


@dataclass(frozen=True)
class Method:
    """One unlearning method and its facts, written once."""

    name: str  # --unlearn's value
    run: Callable
    paper_name: str  # the name tables print (the paper's, or the source's)
    help: str  # one line for --help and the docs
    iterative: bool  # epochs of SGD: --unlearn_lr, --unlearn_epochs, per-epoch checkpoints, --rewind_epoch
    from_scratch: bool = False  # starts from the initialisation --train_seed gives (under the mask), not the checkpoint's weights
    prunes: bool = False  # prunes during unlearning (its mask may lose weights, never gain them)
    keeps_mask: bool = True  # False: it makes a mask of its own (Retrain (pipeline) prunes anew)
    alpha: float | None = None  # reads --alpha, with this default when the command line leaves it out (None: does not read it)
    defaults: dict = field(default_factory=dict)  # shared options (--unlearn_lr, ...) set to these values when left out
    options: tuple[Option, ...] = ()  # the method's own options
    role: str = CONTENDER  # one of ROLES
    compared_with: str | None = None  # the method this one builds on (l1-sparse: FT): a study compares the two by default
    # Hooks of the unlearning run, for what a method needs beyond `run`:
    check_inputs: Callable | None = None  # (model, args): files its options name, checked before any work (UserError)
    reports: tuple[str, ...] = ()  # attributes `run` sets on args that the result records beside the RTE
    # A one-shot method whose alpha only scales a direction: `direction(data_loaders, model,
    # args)` computes what does not depend on alpha (a Fisher, a WoodFisher vector) and returns
    # `apply(model, alpha)`, which unlearns `model` (holding the weights `direction` saw) at that
    # alpha; `run` is the two in one call. A calibration computes the direction once.
    direction: Callable | None = None

    @property
    def kind(self):
        if not self.keeps_mask:
            return "from scratch, prunes anew"
        if self.prunes:
            return "prunes"
        if self.from_scratch:
            return "from scratch"
        return "iterative" if self.iterative else "one-shot"

    def resolved_defaults(self):
        """{option: value} the method gives the shared options the command line leaves out."""
        return {**({"alpha": self.alpha} if self.alpha is not None else {}), **self.defaults}

    def strength_options(self):
        """The options that set how hard the method pushes: what to lower when it diverges."""
        return (["alpha"] if self.alpha is not None else []) + (["unlearn_lr"] if self.iterative else [])
