"""The docs' tables of options, methods and datasets, rewritten from the registries.

The command line of `workflow.docs_tables` (its module docstring, `--help`, says more). The project
must be importable: `make install` (or `pip install -e .` in your environment) does it.
"""

import sys

try:
    from workflow.docs_tables import main
except ModuleNotFoundError as err:
    sys.exit(f"error: cannot import {err.name!r}: install the project first (make install, or pip install -e . in your environment)")

if __name__ == "__main__":
    main()
