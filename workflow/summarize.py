"""The paper's table from a folder of unlearning results.

    python scripts/summarize.py RUN_DIR [--out FILE] [--best [--best-by mean|worst] [--overrides FILE]]

Reads every `*eval_result.json` under RUN_DIR (main_forget.py's readable results; when
RUN_DIR holds a sweep's sweep.json, the tasks it lists name the runs to expect; a
task.json beside a result gives its labels, so copied results keep them) and prints, per
scenario, method (and setting, when a grid gave an option as a list) and model (dense /
sparse), the mean ± std over seeds of UA, MIA-Efficacy, RA and TA with the gap to
Retrain (same scenario and model) in brackets, the average gap, RTE in minutes, and the
MIA attack's own accuracy on held-out members vs non-members (an MIA-Efficacy cell whose
attack is within CHANCE_MARGIN points of 50% is marked: there the attack cannot tell).
`raw` (no unlearning) is the "Original" row, shown first and without gaps: it is the
starting point, not a contender. A setting shows in its row's name, `FF (alpha=1e-07)`;
--best keeps, per method, model and scenario, the setting with the smallest average gap
and says under the table what it selected (with several original models, by the mean of
its per-model Avg. Gaps, or with --best-by worst by its worst); --overrides FILE writes those choices as a
grid's "overrides", to fix them for further seeds. Writes FILE (Markdown, default
RUN_DIR/summary.md) and beside it FILE.csv and FILE.png (each metric, dense vs sparse per
method). Calibration runs (a grid's "_calibrate") are left out of the tables and listed in
their own section, with their trade-off curves in FILE_curves/ (workflow/matched.py).

A missing or unreadable result file is named on stderr and left out; the rest is summarised.
"""

import argparse
import json
import os
import sys

from workflow import matched
from workflow.comparisons import declared_comparisons, original_model_comparisons, seed_comparisons
from workflow.report import markdown, plot, write_csv
from workflow.results import read_results
from workflow.table import aggregate, best_scores, keep_best
from workflow.ulira import read_ulira, ulira_paired


def main():
    parser = argparse.ArgumentParser(prog="scripts/summarize.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--out", default=None, help="Markdown file (default RUN_DIR/summary.md); .csv and .png beside it")
    parser.add_argument(
        "--best", action="store_true", help="per method, model and scenario, keep only the setting with the smallest average gap to Retrain"
    )
    parser.add_argument(
        "--best-by",
        choices=("mean", "worst"),
        default="mean",
        help="with --best and several original models: judge a setting by the mean of its per-model Avg. Gaps (default) or by its worst",
    )
    parser.add_argument(
        "--overrides", default=None, help='with --best: write the chosen settings to this JSON file, as a grid\'s "overrides" list'
    )
    parser.add_argument(
        "--ulira", default=None, help="scripts/ulira.py's RUN/ulira folder: a U-LiRA column (default: RUN_DIR/ulira when it exists)"
    )
    args = parser.parse_args()
    if not os.path.isdir(args.run_dir):
        print(f"error: {args.run_dir}: no such folder", file=sys.stderr)
        sys.exit(2)
    rows, problems = read_results(args.run_dir)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not rows:
        print(f"error: no readable *eval_result.json under {args.run_dir}", file=sys.stderr)
        sys.exit(2)
    rows, calibrations = matched.split_calibrations(rows)
    if not rows:
        print(f"error: only calibration runs under {args.run_dir}; their measured seeds have not finished", file=sys.stderr)
        sys.exit(2)
    table = aggregate(rows)
    notes = ()
    several_models = len({r["train_seed"] for r in rows}) > 1
    if args.best:
        table, notes, overrides = keep_best(table, best_scores(rows, args.best_by) if several_models else None)
        if args.overrides:
            with open(args.overrides, "w") as f:
                json.dump(overrides, f, indent=2)
                f.write("\n")
    ulira_dir = args.ulira or os.path.join(args.run_dir, "ulira")
    if args.ulira and not os.path.isdir(args.ulira):
        print(f"error: --ulira {args.ulira}: no such folder", file=sys.stderr)
        sys.exit(2)
    ulira = read_ulira(ulira_dir) if os.path.isdir(ulira_dir) else {}
    comparisons = original_model_comparisons(rows, table, declared_comparisons(args.run_dir)) if several_models else ""
    text = markdown(table, notes, ulira, pooled_models=several_models, best_by=args.best_by) + (
        comparisons or seed_comparisons(rows, table)
    )
    if ulira:
        text += ulira_paired(ulira_dir, ulira)
    declared = declared_comparisons(args.run_dir)
    if several_models and declared.get("matched"):
        text += matched.matched_comparison(rows, declared)
    text += matched.calibration_section(calibrations, rows)
    out = args.out or os.path.join(args.run_dir, "summary.md")
    stem = os.path.splitext(out)[0]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    curves = matched.plot_curves(calibrations, rows, stem + "_curves")
    with open(out, "w") as f:
        f.write(text)
    write_csv(table, stem + ".csv")
    plot(table, stem + ".png")
    print(text)
    figures = f"; curves: {len(curves)} figure{'s' * (len(curves) > 1)} in {stem}_curves/" if curves else ""
    print(f"{len(rows)} results summarised{f', {len(problems)} left out (see warnings)' if problems else ''}; "
          f"written {out}, {stem}.csv, {stem}.png{figures}")  # fmt: skip


if __name__ == "__main__":
    main()
