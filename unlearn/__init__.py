"""Unlearning methods: `get_unlearn_method(name)(data_loaders, model, criterion, args)`.

`data_loaders` maps "retain", "forget", "val", "test" to loaders (retain and forget
shuffled, with the training augmentation): this project's TensorLoaders or ordinary
`torch.utils.data.DataLoader`s, as code built on the original passes them; the same
samples in the same order give the same result. `args` is what `arg_parser.parse_args()`
returns (every method's options resolved to its defaults), plus `num_classes` (the
dataset's) and `forget_class` (the class forgotten whole, or None). Each method changes
`model` in place and returns it; a pruned model keeps its mask throughout (FT_prune_bi
prunes further, never revives a weight).

Each method file declares its record (`unlearn/method.py`: paper name, help, kind,
options and defaults); METHODS collects them. Adding a method: write unlearn/<name>.py
with the function and its record, list the record below, write its tests.
"""

from options import Option, collect_options

from . import (
    FT,
    GA,
    RL,
    SCRUB,
    FT_prune,
    FT_prune_bi,
    NegGrad_plus,
    SalUn,
    boundary_expanding,
    boundary_shrink,
    fisher,
    raw,
    retrain,
    retrain_ls,
    retrain_pipeline,
    retrain_sam,
    wfisher,
)
from .method import Method

# The Original and the paper's six first, then the original's other methods, then the
# methods that came after the paper: the order of --help and of every table.
METHODS = {
    record.name: record
    for record in (
        raw.METHOD,
        retrain.METHOD,
        retrain_pipeline.METHOD,
        FT.FT_METHOD,
        GA.GA_METHOD,
        fisher.FISHER_NEW_METHOD,
        wfisher.METHOD,
        FT_prune.METHOD,
        FT.FT_L1_METHOD,
        GA.GA_L1_METHOD,
        fisher.FISHER_METHOD,
        FT_prune_bi.METHOD,
        retrain_ls.METHOD,
        retrain_sam.METHOD,
        RL.METHOD,
        SalUn.METHOD,
        SCRUB.METHOD,
        boundary_shrink.METHOD,
        boundary_expanding.METHOD,
        NegGrad_plus.METHOD,
    )
}
# name -> function, the original's registry
UNLEARN_METHODS = {name: record.run for name, record in METHODS.items()}

__all__ = ["METHODS", "Method", "Option", "UNLEARN_METHODS", "get_unlearn_method", "method_options"]


def get_unlearn_method(name):
    """The method called `name`: `method(data_loaders, model, criterion, args)`, as in the original."""
    if name not in UNLEARN_METHODS:
        raise NotImplementedError(f"Unlearn method {name} not implemented! Choose one of {', '.join(UNLEARN_METHODS)}")
    return UNLEARN_METHODS[name]


def method_options():
    """{option name: (Option, [methods that read it])}, every method's own option once, in the registry's order."""
    return collect_options(METHODS.values())
