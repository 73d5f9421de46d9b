"""Copy a sweep's results (not its checkpoints) to a folder that can be committed.

    python scripts/collect_results.py RUN_DIR OUT_DIR

Copies, keeping their paths under RUN_DIR: every unlearning task's `*eval_result.json`
and `task.json` (its labels), and every mask's `imp_summary.json` (the original models'
training and test accuracy). `python scripts/summarize.py OUT_DIR` then prints the table
that `python scripts/summarize.py RUN_DIR` prints.
"""

import argparse
import glob
import json
import os
import shutil
import sys

import paths


def main():
    parser = argparse.ArgumentParser(
        prog="scripts/collect_results.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir")
    parser.add_argument("out_dir")
    args = parser.parse_args()
    if not os.path.isdir(args.run_dir):
        print(f"error: {args.run_dir}: no such folder", file=sys.stderr)
        sys.exit(2)
    copied = 0
    for pattern in paths.COLLECTED:
        for path in glob.glob(os.path.join(glob.escape(args.run_dir), "**", pattern), recursive=True):
            if os.sep + paths.PREVIOUS_PREFIX in path:  # results an earlier run left aside
                continue
            target = os.path.join(args.out_dir, os.path.relpath(path, args.run_dir))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(path, target)
            copied += 1
    grid = grid_of(args.run_dir)
    if grid:  # the study's design travels with its results
        shutil.copy2(grid, os.path.join(args.out_dir, paths.GRID_COPY))
        copied += 1
    print(f"copied {copied} files from {args.run_dir} to {args.out_dir}")


def grid_of(run_dir):
    """The grid file the sweep of run_dir ran (named in its sweep.json), or None."""
    try:
        with open(os.path.join(run_dir, paths.SWEEP_MANIFEST)) as f:
            grid = json.load(f)["grid"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return grid if os.path.isfile(grid) else None


if __name__ == "__main__":
    main()
