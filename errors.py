"""The exceptions every layer may raise: a leaf module, importing nothing of the project.

`UserError`: bad input, reported as one line and exit code 2 by the entry scripts
(`utils.run_cli`). `Preempted`: SIGTERM arrived (Slurm's warning before it kills or
re-queues a job); the run has saved its checkpoint and exits 143.
"""


class UserError(Exception):
    """Bad input: the message says what is wrong and how to fix it (exit code 2)."""


class Preempted(Exception):
    """SIGTERM arrived (Slurm sends it before killing or re-queueing a job)."""
