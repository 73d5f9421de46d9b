"""U-LiRA: per-example membership inference against unlearning (Hayes et al., 2024).

The command line of `workflow.ulira` (its module docstring, `--help`, says more). The project
must be importable: `make install` (or `pip install -e .` in your environment) does it.
"""

import sys

try:
    from workflow.ulira import cli
except ModuleNotFoundError as err:
    sys.exit(f"error: cannot import {err.name!r}: install the project first (make install, or pip install -e . in your environment)")

if __name__ == "__main__":
    cli()
