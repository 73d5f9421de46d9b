"""The whole `make demo` (the digits grid through scripts/sweep.py): one task at a time vs
`--jobs 2` (two workers, each with half the CPU threads), each in a fresh folder.

    python bench/demo.py [--grid scripts/grids/digits.json]

Prints `make_demo: <1 worker s> -> <2 workers s> (<ratio>x)`. About 15 minutes on 2 cores.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

from common import ROOT, line  # noqa: E402


def sweep_seconds(grid, jobs):
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        cmd = [sys.executable, os.path.join(ROOT, "scripts", "sweep.py"), grid, "--out", out, "--jobs", str(jobs)]
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start


DIGITS_GRID = os.path.join(ROOT, "scripts", "grids", "digits.json")


def measure(grid=DIGITS_GRID):
    return sweep_seconds(grid, 1), sweep_seconds(grid, 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default=DIGITS_GRID)
    args = parser.parse_args()
    print(line("make_demo (digits grid, 1 worker -> 2 workers)", *measure(args.grid)))


if __name__ == "__main__":
    main()
