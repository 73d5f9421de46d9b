"""The methods as a study sees them, read from their records (unlearn/<method>.py): the names
the tables print, their order, and each one's role. No other module of workflow/ names a method."""

from unlearn import METHODS
from unlearn.method import CONTENDER, EXACT_REFERENCE, ORIGINAL, REFERENCE


def _the_one(role):
    (name,) = [name for name, record in METHODS.items() if record.role == role]
    return name


REFERENCE_METHOD = _the_one(REFERENCE)  # Retrain: every gap is to its runs
ORIGINAL_METHOD = _the_one(ORIGINAL)  # the Original: the first row, without a gap
EXACT_REFERENCES = tuple(name for name, record in METHODS.items() if record.role == EXACT_REFERENCE)
# Not in the comparisons across models: the start, the reference, and the other exact references (a section of their own).
NOT_COMPARED = frozenset(name for name, record in METHODS.items() if record.role != CONTENDER)
# The comparisons a grid that declares none gets besides sparse − dense: each method against the one it builds on.
DEFAULT_PAIRS = [[record.compared_with, name] for name, record in METHODS.items() if record.compared_with]

# Every method's row name, in the registry's order: the Original, the paper's six, the
# original code's other methods, then the methods that came after the paper.
NAMES = {name: record.paper_name for name, record in METHODS.items()}


def method_order(method):
    """The registry's order (Original first), then the other methods by name."""
    return (list(NAMES).index(method), "") if method in NAMES else (len(NAMES), method)


def row_name(method, setting):
    return NAMES.get(method, method) + (f" ({setting})" if setting else "")
