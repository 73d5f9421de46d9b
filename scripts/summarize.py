"""The paper's table from a folder of unlearning results.

    python scripts/summarize.py RUN_DIR [--out FILE]

Reads every `*eval_result.json` under RUN_DIR (main_forget.py's readable results; when
RUN_DIR holds a sweep's sweep.json, the tasks it lists name the runs to expect) and prints,
per scenario, method and model (dense / sparse), the mean ± std over seeds of UA,
MIA-Efficacy, RA and TA with the gap to Retrain (same scenario and model) in brackets, the
average gap, and RTE in minutes. `raw` (no unlearning) is the "Original" row, shown first
and without gaps: it is the starting point, not a contender. Writes FILE (Markdown, default RUN_DIR/summary.md) and
beside it FILE.csv and FILE.png (each metric, dense vs sparse per method).

A missing or unreadable result file is named on stderr and left out; the rest is summarised.
"""

import argparse
import csv
import glob
import json
import math
import os
import sys
from collections import defaultdict

METRICS = ("UA", "MIA-Efficacy", "RA", "TA")
# Every method's row name, in the order of the table: the Original, the paper's six, the original
# code's other methods, then the methods that came after the paper.
NAMES = {
    "raw": "Original", "retrain": "Retrain", "FT": "FT", "GA": "GA", "fisher_new": "FF", "wfisher": "IU", "FT_prune": "l1-sparse",
    "FT_l1": "FT_l1", "GA_l1": "GA_l1", "fisher": "fisher", "FT_prune_bi": "FT_prune_bi", "retrain_ls": "retrain_ls",
    "retrain_sam": "retrain_sam", "RL": "RL", "SalUn": "SalUn", "SCRUB": "SCRUB", "boundary_shrink": "Boundary shrink",
    "boundary_expanding": "Boundary expanding",
}  # fmt: skip
NO_GAP = {"raw"}  # rows shown without a gap to Retrain


def model_label(result):
    sparsity = float(result.get("sparsity") or 0.0)
    return "dense" if sparsity == 0 else f"{sparsity:.0f}% sparse"


def read_results(run_dir):
    """(list of results with their labels, list of problems) for every result under run_dir."""
    expected = {}
    manifest = os.path.join(run_dir, "sweep.json")
    problems = []
    if os.path.isfile(manifest):
        try:
            with open(manifest) as f:
                tasks = json.load(f)["tasks"]
            expected = {os.path.abspath(t["result"]): t for t in tasks if t.get("labels")}
        except (OSError, ValueError, KeyError, TypeError) as err:
            problems.append(f"{manifest}: unreadable sweep manifest ({err}); summarising the result files found")
    found = {os.path.abspath(p) for p in glob.glob(os.path.join(glob.escape(run_dir), "**", "*eval_result.json"), recursive=True)}
    rows = []
    for path in sorted(found | set(expected)):
        task = expected.get(path)
        if path not in found:
            problems.append(f"{path}: missing ({task['name']} has not finished or failed)")
            continue
        try:
            with open(path) as f:
                result = json.load(f)
            values = {m: float(result[m]) for m in (*METRICS, "RTE")}
        except (OSError, ValueError, KeyError, TypeError) as err:
            problems.append(f"{path}: unreadable ({type(err).__name__}: {err}); left out")
            continue
        if not all(math.isfinite(v) for v in values.values()):
            problems.append(f"{path}: holds a non-finite metric; left out")
            continue
        labels = (task or {}).get("labels") or {}
        rows.append(
            {
                "scenario": labels.get("scenario") or result.get("scenario", "?"),
                "method": result.get("method") or labels.get("method", "?"),
                "model": labels.get("model") or model_label(result),
                "sparsity": float(result.get("sparsity") or 0.0),
                "seed": (result.get("args") or {}).get("seed", labels.get("seed")),
                **values,
            }
        )
    return rows, problems


def mean_std(values):
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def aggregate(rows):
    """One entry per (scenario, model, method): mean/std per metric, gaps to Retrain, n."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["scenario"], r["model"], r["method"])].append(r)
    table = {}
    for key, members in groups.items():
        entry = {"n": len(members), "sparsity": members[0]["sparsity"]}
        for m in (*METRICS, "RTE"):
            entry[m] = mean_std([r[m] for r in members])
        table[key] = entry
    for (scenario, model, method), entry in table.items():
        reference = table.get((scenario, model, "retrain")) if method not in NO_GAP else None
        entry["gap"] = {m: abs(entry[m][0] - reference[m][0]) for m in METRICS} if reference else None
        entry["avg_gap"] = sum(entry["gap"].values()) / len(METRICS) if reference else None
    return table


def method_order(method):
    """The paper's order (Original first), then the other methods by name."""
    return (list(NAMES).index(method), "") if method in NAMES else (len(NAMES), method)


def ordered(table):
    return sorted(table.items(), key=lambda kv: (kv[0][0], method_order(kv[0][2]), kv[1]["sparsity"], kv[0][1]))


def markdown(table):
    lines = []
    for scenario in sorted({k[0] for k in table}):
        lines += [f"### {scenario} forgetting", ""]
        header = ["method", "model", *METRICS, "Avg. Gap", "RTE (min)", "runs"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for (sc, model, method), e in ordered(table):
            if sc != scenario:
                continue
            cells = [NAMES.get(method, method), model]
            for m in METRICS:
                mean, std = e[m]
                gap = f" ({e['gap'][m]:.2f})" if e["gap"] is not None else ""
                cells.append(f"{mean:.2f}±{std:.2f}{gap}")
            cells.append(f"{e['avg_gap']:.2f}" if e["avg_gap"] is not None else "—" if method in NO_GAP else "n/a")
            cells.append(f"{e['RTE'][0]:.2f}±{e['RTE'][1]:.2f}")
            cells.append(str(e["n"]))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    note = "Mean ± std over seeds; in brackets the gap to Retrain of the same model and scenario (lower is better)."
    if any(method in NO_GAP for _, _, method in table):
        note += " Original: the model before unlearning (no gap: it is where every method starts)."
    lines.append(note)
    return "\n".join(lines) + "\n"


def write_csv(table, path):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        stats = [f"{m}_{s}" for m in (*METRICS, "RTE") for s in ("mean", "std")]
        writer.writerow(["scenario", "method", "model", "sparsity", "runs", *stats, *(f"{m}_gap" for m in METRICS), "avg_gap"])
        for (scenario, model, method), e in ordered(table):
            gaps = [e["gap"][m] if e["gap"] else "" for m in METRICS]
            values = [v for m in (*METRICS, "RTE") for v in e[m]]
            writer.writerow([scenario, NAMES.get(method, method), model, e["sparsity"], e["n"], *values, *gaps, e["avg_gap"] or ""])


def plot(table, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = sorted({k[0] for k in table})
    fig, axes = plt.subplots(len(scenarios), len(METRICS), figsize=(4 * len(METRICS), 3.2 * len(scenarios)), squeeze=False)
    for row, scenario in enumerate(scenarios):
        keys = [k for k, _ in ordered(table) if k[0] == scenario]
        methods = sorted({k[2] for k in keys}, key=method_order)
        models = sorted({k[1] for k in keys}, key=lambda m: (m != "dense", m))
        width = 0.8 / max(len(models), 1)
        for col, metric in enumerate(METRICS):
            ax = axes[row][col]
            for i, model in enumerate(models):
                xs, means, stds = [], [], []
                for j, method in enumerate(methods):
                    entry = table.get((scenario, model, method))
                    if entry:
                        xs.append(j + (i - (len(models) - 1) / 2) * width)
                        means.append(entry[metric][0])
                        stds.append(entry[metric][1])
                ax.bar(xs, means, width, yerr=stds, label=model, capsize=2)
            ax.set_xticks(range(len(methods)), [NAMES.get(m, m) for m in methods], rotation=30)
            ax.set_title(f"{metric} ({scenario})")
            ax.set_ylim(0, 105)
            if col == 0:
                ax.set_ylabel("percent")
        axes[row][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--out", default=None, help="Markdown file (default RUN_DIR/summary.md); .csv and .png beside it")
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
    table = aggregate(rows)
    text = markdown(table)
    out = args.out or os.path.join(args.run_dir, "summary.md")
    stem = os.path.splitext(out)[0]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(text)
    write_csv(table, stem + ".csv")
    plot(table, stem + ".png")
    print(text)
    print(f"{len(rows)} results summarised{f', {len(problems)} left out (see warnings)' if problems else ''}; "
          f"written {out}, {stem}.csv, {stem}.png")  # fmt: skip


if __name__ == "__main__":
    main()
