"""Run a grid of the pipeline: masks first, then every unlearning run, locally or on Slurm.

The command line of `workflow.sweep` (its module docstring, `--help`, says more). The project
must be importable: `make install` (or `pip install -e .` in your environment) does it.
"""

import sys

try:
    from workflow.sweep import cli
except ModuleNotFoundError as err:
    sys.exit(f"error: cannot import {err.name!r}: install the project first (make install, or pip install -e . in your environment)")

if __name__ == "__main__":
    cli()
