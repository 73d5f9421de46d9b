"""The table written out: Markdown (with its notes), CSV and a bar chart per metric."""

import csv

from workflow.methods import NAMES, ORIGINAL_METHOD, method_order, row_name
from workflow.stats import METRICS
from workflow.table import CHANCE_MARGIN, CHANCE_MARK, near_chance, ordered


def markdown(table, notes=(), ulira=None, pooled_models=False, best_by="mean"):
    lines = []
    ulira = ulira or {}
    for scenario in sorted({k[0] for k in table}):
        lines += [f"### {scenario} forgetting", ""]
        header = ["method", "model", *METRICS, "Avg. Gap", "ToW", "RTE (min)", "runs", "MIA attack acc."]
        header += ["U-LiRA acc."] if ulira else []
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for (sc, model, method, setting), e in ordered(table):
            if sc != scenario:
                continue
            cells = [row_name(method, setting), model]
            for m in METRICS:
                mean, std = e[m]
                gap = f" ({e['gap'][m]:.2f})" if e["gap"] is not None else ""
                mark = CHANCE_MARK if m == "MIA-Efficacy" and near_chance(e) else ""
                cells.append(f"{mean:.2f}±{std:.2f}{gap}{mark}")
            cells.append(f"{e['avg_gap']:.2f}" if e["avg_gap"] is not None else "—" if method == ORIGINAL_METHOD else "n/a")
            tow = e.get("tow")
            spread = "" if tow is None or tow[1] is None else f"±{tow[1]:.3f}"
            cells.append("—" if method == ORIGINAL_METHOD else "n/a" if tow is None else f"{tow[0]:.3f}{spread}")
            cells.append(f"{e['RTE'][0]:.2f}±{e['RTE'][1]:.2f}")
            cells.append(str(e["n"]))
            cells.append(f"{e['attack'][0]:.2f}±{e['attack'][1]:.2f}" if e.get("attack") else "n/a")
            if ulira:
                report = ulira.get((model, method))
                cells.append(f"{100 * report['balanced_accuracy']:.2f} (K={report['reference_models']})" if report else "n/a")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    note = (
        "Mean ± std over runs (every original model and unlearning seed, pooled: the spread of models and of unlearning "
        "together; the statistics across original models are below)"
        if pooled_models
        else "Mean ± std over seeds"
    )
    note += "; in brackets the gap to Retrain of the same model and scenario (lower is better)."
    note += (" ToW (tug of war, as RUM computes it): per run the product of 1 − |gap| / 100 of UA, RA and TA to the mean of "
             "the same original model's Retrain runs (1 is Retrain), mean ± 95% t half-width over the runs.")  # fmt: skip
    if any(key[2] == ORIGINAL_METHOD for key in table):
        note += " Original: the model before unlearning (no gap: it is where every method starts)."
    lines.append(note)
    if any(near_chance(e) for e in table.values()):
        lines += ["", f"{CHANCE_MARK} The shadow attack behind MIA-Efficacy separates held-out retain from test samples no better "
                  f"than {50 + CHANCE_MARGIN:.0f}% (MIA attack acc.; 50% is chance): the model treats members and non-members alike, "
                  "so the share of forget samples it calls non-members says little about forgetting."]  # fmt: skip
    if ulira:
        lines += ["", "U-LiRA acc.: scripts/ulira.py's per-example attack (balanced accuracy, percent; 50 = a forgotten example "
                  "looks like one never seen, as after Retrain), on K shadow models that forgot random targets, whatever "
                  "the scenario of the row."]  # fmt: skip
    if notes:
        judged = (
            f"{'largest' if best_by == 'worst' else 'mean'} over the original models of each model's Avg. Gap"
            if pooled_models
            else "Avg. Gap"
        )
        lines += ["", f"--best kept, per method, model and scenario, the setting with the smallest {judged}:", ""]
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def write_csv(table, path):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        stats = [f"{m}_{s}" for m in (*METRICS, "RTE") for s in ("mean", "std")]
        header = ["scenario", "method", "setting", "model", "sparsity", "runs", *stats, *(f"{m}_gap" for m in METRICS), "avg_gap",
                  "mia_attack_acc_mean", "mia_attack_acc_std", "tow_mean", "tow_ci95"]  # fmt: skip
        writer.writerow(header)
        for (scenario, model, method, setting), e in ordered(table):
            gaps = [e["gap"][m] if e["gap"] else "" for m in METRICS]
            values = [v for m in (*METRICS, "RTE") for v in e[m]]
            avg_gap = "" if e["avg_gap"] is None else e["avg_gap"]
            attack = list(e["attack"]) if e.get("attack") else ["", ""]
            tow = [e["tow"][0], "" if e["tow"][1] is None else e["tow"][1]] if e.get("tow") else ["", ""]
            labels = [scenario, NAMES.get(method, method), setting, model, e["sparsity"], e["n"]]
            writer.writerow([*labels, *values, *gaps, avg_gap, *attack, *tow])


def plot(table, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = sorted({k[0] for k in table})
    fig, axes = plt.subplots(len(scenarios), len(METRICS), figsize=(4 * len(METRICS), 3.2 * len(scenarios)), squeeze=False)
    for row, scenario in enumerate(scenarios):
        keys = [k for k, _ in ordered(table) if k[0] == scenario]
        rows = sorted({(k[2], k[3]) for k in keys}, key=lambda ms: (method_order(ms[0]), ms[1]))
        models = sorted({k[1] for k in keys}, key=lambda m: (m != "dense", m))
        width = 0.8 / max(len(models), 1)
        for col, metric in enumerate(METRICS):
            ax = axes[row][col]
            for i, model in enumerate(models):
                xs, means, stds = [], [], []
                for j, (method, setting) in enumerate(rows):
                    entry = table.get((scenario, model, method, setting))
                    if entry:
                        xs.append(j + (i - (len(models) - 1) / 2) * width)
                        means.append(entry[metric][0])
                        stds.append(entry[metric][1])
                ax.bar(xs, means, width, yerr=stds, label=model, capsize=2)
            ax.set_xticks(range(len(rows)), [row_name(m, s) for m, s in rows], rotation=30, ha="right")
            ax.set_title(f"{metric} ({scenario})")
            ax.set_ylim(0, 105)
            if col == 0:
                ax.set_ylabel("percent")
        axes[row][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
