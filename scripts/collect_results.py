"""Copy a sweep's results (not its checkpoints) to a folder that can be committed.

The command line of `workflow.collect` (its module docstring, `--help`, says more). The project
must be importable: `make install` (or `pip install -e .` in your environment) does it.
"""

import sys

try:
    from workflow.collect import main
except ModuleNotFoundError as err:
    sys.exit(f"error: cannot import {err.name!r}: install the project first (make install, or pip install -e . in your environment)")

if __name__ == "__main__":
    main()
