"""A command-line option that a record declares: a method's own (unlearn/<method>.py) or a
dataset's own (dataset/<name>.py). `arg_parser.py` adds each to the parser once, with the
names of the records that read it, and runs its check."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    """An option that belongs to one or more records (not to training).

    `check(value)` returns None when the value is acceptable, else the one-line error.
    """

    name: str  # the attribute on args (argparse dest)
    default: Any
    help: str
    type: type = float
    flag: str | None = None  # the command-line spelling when it is not --<name>
    choices: tuple | None = None
    check: Callable[[Any], str | None] | None = None

    @property
    def spelling(self):
        return self.flag or f"--{self.name}"


def collect_options(records):
    """{option name: (Option, [names of the records that read it])}, each option once, in the records' order.

    Records that share an option share the one object (declared once, imported by the others).
    """
    found = {}
    for record in records:
        for option in record.options:
            known = found.setdefault(option.name, (option, []))
            assert known[0] is option, f"--{option.name} is declared twice (by {known[1][0]} and {record.name}): declare it once, share it"
            known[1].append(record.name)
    return found
