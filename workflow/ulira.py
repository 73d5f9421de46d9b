"""U-LiRA: per-example membership inference against unlearning (Hayes et al., 2024).

    python scripts/ulira.py GRID --out RUN [--models K] [--target_share S] [--jobs N]
                            [--backend slurm --sbatch "..."] [--attack_only]

GRID is an ordinary sweep grid (scripts/grids/, format in docs/sweeps.md) naming the data,
the training recipe (its one mask), the models (dense and / or sparse) and the methods to
evaluate; its scenarios and seeds are left aside, the forget sets are U-LiRA's:

1. plan    K shadow halves of the training split (seeded random halves) and a target pool
           (a seeded random share S of the training split); shadow model k trains on its
           half and forgets the targets in it (about the share S of its half).
           Written to RUN/plan/ (positions files) and RUN/grid.json.
2. run     scripts/sweep.py over RUN/grid.json: K trainings (with the grid's mask recipe,
           --train_positions = the half) and K unlearnings per model and method, locally
           with --jobs or as Slurm arrays; resumable as every sweep.
3. attack  every unlearned model's logit-scaled confidence of each target's true label;
           evaluation/ulira.py's attack per model and method, each model in turn the
           target and the others the references. RUN/ulira/<model>/<method>.json (and .npz,
           the statistics), and RUN/ulira/summary.md: U-LiRA beside the paper's metrics of
           the same shadow unlearnings, and how the estimate moves with fewer models.

`raw` among the methods gives the model that was never unlearned (the attack should find
its forget sets); Retrain is the exact reference (0.5 is what it should score).
"""

import argparse
import copy
import glob
import json
import os
import subprocess
import sys

import numpy as np
import torch

import arg_parser
import distributed
import paths
from checkpoints import atomic_path, atomic_save_json
from errors import UserError
from evaluation.ulira import MIN_MODELS, MIN_OBSERVATIONS
from utils import run_cli
from workflow.methods import NAMES, REFERENCE_METHOD, method_order
from workflow.results import held_out_attack_accuracy
from workflow.stats import METRICS
from workflow.sweep import ROOT, load_grid, options_list

PLAN_SEED = 0  # the halves and the target pool: the same for every method and model
SPREAD_DRAWS = 20  # random subsets of the models per size, for the spread with fewer models


def training_size(grid):
    """Images in the (capped) training split the grid's options give."""
    from dataset import get_dataset, load_dataset

    args = arg_parser.parse_args(options_list(grid.get("common", {})))
    if get_dataset(args.dataset).streamed:
        raise UserError(
            f"U-LiRA does not take --dataset {args.dataset} (streamed from disk): it trains K shadow models of the whole recipe; "
            "use a smaller dataset"
        )
    return len(load_dataset(args).train)


def draw_plan(n_train, models, target_share, seed=PLAN_SEED):
    """(halves, targets): K sorted halves of range(n_train), and the sorted target pool.

    As LiRA's reference training, every example is in exactly K / 2 of the halves, so every
    target has as many shadow models that forgot it as never saw it. The models come in
    complementary pairs (2j trains on a random half, 2j + 1 on the rest), so every half
    also holds n_train / 2 examples: no shadow model gets a training set of an odd size
    (one of 129 images in batches of 64 ends each epoch on a single image, which batch
    norm cannot train on: measured, that model stayed at 35% training accuracy).
    """
    rng = np.random.RandomState(seed)
    targets = np.sort(rng.choice(n_train, size=max(2, int(round(target_share * n_train))), replace=False))
    member = np.zeros((models, n_train), dtype=bool)
    for pair in range(models // 2):
        member[2 * pair, rng.permutation(n_train)[: n_train // 2]] = True
        member[2 * pair + 1] = ~member[2 * pair]
    halves = [np.flatnonzero(member[k]) for k in range(models)]
    return halves, targets


def shadow_grid(grid, out, halves, targets):
    """The sweep grid of the K shadow models: one mask per half, each model per half, the
    forget set of half k = its targets, as positions within the half."""
    if len(grid["masks"]) != 1:
        raise UserError(f"{len(grid['masks'])} masks in the grid: U-LiRA trains one recipe K times, give one mask")
    ((mask_name, mask),) = grid["masks"].items()
    os.makedirs(os.path.dirname(paths.ulira_plan_file(out, "half", 0)), exist_ok=True)
    shadow = {k: v for k, v in grid.items() if k not in ("masks", "models", "scenarios", "seeds", "overrides")}
    shadow.update(masks={}, models={}, scenarios={"shadow": {}}, seeds=[1], overrides=[])
    for k, half in enumerate(halves):
        half_file, forget_file = paths.ulira_plan_file(out, "half", k), paths.ulira_plan_file(out, "forget", k)
        write_plan_file(half_file, half)
        write_plan_file(forget_file, np.flatnonzero(np.isin(half, targets)))  # positions within the half
        options = {**mask.get("options", {}), "train_positions": half_file, "seed": k + 1}
        shadow["masks"][f"{mask_name}_{k}"] = {**copy.deepcopy(mask), "options": options}
        for model_name, model in grid["models"].items():
            name = f"{model_name} {k}"
            shadow["models"][name] = {**model, "mask": f"{mask_name}_{k}"}
            shadow["overrides"].append({"model": name, "options": {"train_positions": half_file, "indexes_to_replace": forget_file}})
    return shadow


def write_plan_file(path, positions):
    """Write a plan file, or check that the one there holds the same positions: shadow models trained
    on another plan (other --models or --target_share, or an older version) must not be attacked with this one."""
    if os.path.isfile(path):
        if not np.array_equal(np.loadtxt(path, dtype=int, ndmin=1), positions):
            raise UserError(
                f"{path} holds another plan than these options draw (another --models or --target_share, or a run of an "
                "older version): use a new --out, or delete the run folder to start again"
            )
        return
    with atomic_path(path) as tmp:
        np.savetxt(tmp, positions, fmt="%d")


def statistics(result_file, splits, targets, device):
    """The unlearned model's logit-scaled confidence on every target of the full training split."""
    from checkpoints import load_checkpoint, state_dict_of
    from dataset import make_loader
    from evaluation.ulira import logit_confidence
    from paths import unlearn_checkpoint_path
    from pruner import load_pruned_model
    from trainer import build_model, predict

    with open(result_file) as f:
        saved = json.load(f)["args"]
    args = argparse.Namespace(**{**saved, "train_positions": None, "compile": False})
    model = build_model(args, splits, device)
    # the checkpoint beside the result (a run folder may have been moved since it was written)
    checkpoint = unlearn_checkpoint_path(os.path.dirname(result_file), args.unlearn)
    load_pruned_model(model, state_dict_of(load_checkpoint(checkpoint, device)))
    with torch.no_grad():
        logits, labels = predict(model, make_loader(splits.train.to(device), targets, batch_size=512))
    return logit_confidence(logits.cpu(), labels.cpu())


def shadow_result(out, model_name, method, k):
    """The eval JSON of shadow model k's unlearning by `method` (a clear error when it is missing)."""
    result = paths.eval_json_path(paths.ulira_shadow_dir(out, model_name, k, method), method)
    if not os.path.isfile(result):
        raise UserError(f"{result}: missing; run the sweep to the end first (the same command without --attack_only)")
    return result


def population_view(result_files):
    """{metric: (mean, std)} over the shadow models of the paper's metrics and the held-out SVC attack."""
    values = {m: [] for m in (*METRICS, "MIA attack acc.")}
    for path in result_files:
        with open(path) as f:
            result = json.load(f)
        for m in METRICS:
            values[m].append(float(result[m]))
        attack_acc = held_out_attack_accuracy(result)
        values["MIA attack acc."].append(attack_acc if attack_acc is not None else float("nan"))
    return {m: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0) for m, v in values.items()}


def attack(grid, out, halves, targets, device, spread_sizes=()):
    """RUN/ulira/<model>/<method>.json (and .npz: the statistics) for every model and method
    of the grid, and RUN/ulira/summary.md, the table of them all."""
    from dataset import load_dataset
    from evaluation.ulira import spread_over_models, ulira

    splits = load_dataset(arg_parser.parse_args(options_list(grid.get("common", {}))))  # every position, loaded once
    member = np.stack([np.isin(targets, half) for half in halves])  # K x T: trained on the target
    sizes = [k for k in spread_sizes if MIN_MODELS <= k < len(halves)]
    reports = []
    for model_name in grid["models"]:
        for method in grid["methods"]:
            results = [shadow_result(out, model_name, method, k) for k in range(len(halves))]
            stats = np.stack([statistics(r, splits, targets, device) for r in results])
            report = ulira(stats, forgotten=member, unseen=~member)
            spread = spread_over_models(stats, member, ~member, sizes, draws=SPREAD_DRAWS)
            report.update(
                model=model_name,
                method=method,
                targets=int(len(targets)),
                forget_set_size=int(member.sum(1).mean()),
                population=population_view(results),
                by_models={str(k): {"mean": m, "std": sd, "draws": SPREAD_DRAWS} for k, (m, sd) in spread.items()},
            )
            path = paths.ulira_report(out, model_name, method)
            with atomic_path(paths.ulira_report(out, model_name, method, ".npz")) as tmp, open(tmp, "wb") as f:
                np.savez(f, stats=stats, forgotten=member, targets=targets)
            atomic_save_json(report, path)
            reports.append(report)
            print(f"{method} {model_name}: U-LiRA balanced accuracy {report['balanced_accuracy']:.3f} "
                  f"(TPR {report['tpr_at_1%_fpr']:.3f} at 1% FPR; {len(halves)} models)", flush=True)  # fmt: skip
    table = summary_table(reports, sizes) + ulira_paired(paths.ulira_dir(out), {(r["model"], r["method"]): r for r in reports})
    with atomic_path(paths.ulira_summary(out)) as tmp, open(tmp, "w") as f:
        f.write(table)
    print(table)


def summary_table(reports, sizes):
    """Markdown: per model and method, U-LiRA beside the population view; then its spread with fewer models."""
    header = ["method", "model", "U-LiRA acc.", "AUC", "TPR at 1% FPR [95% interval]", "UA", "RA", "TA", "MIA-Efficacy", "MIA attack acc."]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in reports:
        pop = r["population"]
        cells = [NAMES.get(r["method"], r["method"]), r["model"]]
        cells.append(f"{100 * r['balanced_accuracy']:.1f}±{100 * r['balanced_accuracy_se']:.1f}")
        cells.append(f"{100 * r['auc']:.1f}")
        interval = r.get("tpr_at_1%_fpr_interval")
        cells.append(f"{100 * r['tpr_at_1%_fpr']:.1f}" + (f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]" if interval else ""))
        cells += [f"{pop[m][0]:.1f}±{pop[m][1]:.1f}" for m in ("UA", "RA", "TA", "MIA-Efficacy", "MIA attack acc.")]
        lines.append("| " + " | ".join(cells) + " |")
    k = reports[0]["reference_models"] if reports else 0
    lines += [
        "",
        f"U-LiRA acc.: balanced accuracy (percent) of telling a forgotten target from one never seen, pooled over the {k} "
        "models each in turn the target, ± its standard error (bootstrap over the target examples); 50 = indistinguishable, "
        "as after Retrain. It measures privacy only: a method that damages the model can score near 50 (read RA and TA "
        "beside it). AUC: the area under the ROC curve of the same scores (50 = chance). TPR at 1% FPR: the share of forgotten "
        f"targets found when 1% of the never-seen ones are flagged ({negatives_note(reports)}), with a 95% bootstrap interval over the "
        "targets. The other columns: "
        "the paper's metrics and the held-out accuracy of the population attack behind MIA-Efficacy, mean ± std over the "
        f"same {k} shadow unlearnings (each forgets about {reports[0]['forget_set_size'] if reports else 0} random targets).",
    ]
    if sizes:
        header = ["method", "model", *(f"{s} models" for s in sizes), f"{k} models"]
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in reports:
            cells = [NAMES.get(r["method"], r["method"]), r["model"]]
            cells += [f"{100 * r['by_models'][str(s)]['mean']:.1f}±{100 * r['by_models'][str(s)]['std']:.1f}" for s in sizes]
            cells.append(f"{100 * r['balanced_accuracy']:.1f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            f"U-LiRA acc. on random subsets of the models (mean ± std over {SPREAD_DRAWS} draws): how the estimate's spread "
            "shrinks with more models (subsets of one pool overlap, so the spread near K understates a fresh run's).",
        ]
    return "\n".join(lines) + "\n"


def negatives_note(reports):
    """What "1% FPR" rests on: with n never-seen scores, floor(n / 100) false positives (0.1%: floor(n / 1000))."""
    if not reports:
        return ""
    r = reports[0]
    at_01 = r["false_positives_at_0.1%"]
    tail = "; at 0.1% FPR that is no false positive at all, so a TPR there is the TPR at zero false positives" if at_01 == 0 else ""
    return f"{r['unseen_scored']} never-seen scores: 1% is {r['false_positives_at_1%']} false positives{tail}"


def main():
    if distributed.launched():
        raise UserError(
            "scripts/ulira.py starts its own processes: run it without torchrun (a grid's processes_per_task runs each task under torchrun)"
        )
    parser = argparse.ArgumentParser(prog="scripts/ulira.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid")
    parser.add_argument("--out", required=True)
    parser.add_argument("--models", type=int, default=16, help="K, the shadow models, even (default 16); each example is in K / 2 halves")
    parser.add_argument(
        "--target_share",
        type=float,
        default=0.2,
        help="the target pool's share of the training split; each model forgets the targets in its half, about the same "
        "share of its half (default 0.2)",
    )
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--backend", choices=("local", "slurm"), default="local")
    parser.add_argument("--sbatch", default="")
    parser.add_argument("--attack_only", action="store_true", help="skip the sweep: attack the models a finished sweep left")
    parser.add_argument(
        "--spread",
        default="6,8,12",
        help="also attack random subsets of this many models (those below K), to show how the estimate's spread shrinks with K",
    )
    parser.add_argument("--gpu", type=int, default=0)
    args = parser.parse_args()
    if args.models < MIN_MODELS:
        raise UserError(
            f"--models {args.models}: the attack needs at least {MIN_MODELS} (each model in turn the target, and at least "
            f"{MIN_OBSERVATIONS} others that forgot and {MIN_OBSERVATIONS} that never saw each example)"
        )
    if args.models % 2:
        raise UserError(f"--models {args.models}: must be even (each example trains in exactly half of the shadow models)")
    if not 0 < args.target_share <= 1:
        raise UserError(f"--target_share {args.target_share}: must be in (0, 1]")
    try:
        spread_sizes = [int(k) for k in args.spread.split(",") if k.strip()]
    except ValueError:
        raise UserError(f"--spread {args.spread!r}: give model counts separated by commas, e.g. 4,8,12") from None
    grid = load_grid(args.grid)
    out = os.path.abspath(args.out)
    halves, targets = draw_plan(training_size(grid), args.models, args.target_share)
    shadow = shadow_grid(grid, out, halves, targets)
    grid_file = paths.ulira_grid(out)
    atomic_save_json(shadow, grid_file)
    if not args.attack_only:
        cmd = [
            sys.executable,
            os.path.join(ROOT, "scripts", "sweep.py"),
            grid_file,
            "--out",
            out,
            "--jobs",
            str(args.jobs),
            "--backend",
            args.backend,
        ]
        if args.sbatch:
            cmd += ["--sbatch", args.sbatch]
        if subprocess.run(cmd, cwd=ROOT).returncode != 0:
            raise UserError("the sweep of the shadow models did not finish; run the same command again to resume it")
        if args.backend == "slurm":
            again = (
                f"python scripts/ulira.py {args.grid} --out {args.out} --models {args.models} --target_share {args.target_share} "
                f"--spread {args.spread} --gpu {args.gpu} --attack_only"
            )
            print(f"submitted; when the arrays are done: {again}")
            return
    from utils import get_device

    attack(grid, out, halves, targets, get_device(args.gpu), spread_sizes)


def cli():
    run_cli(main)


if __name__ == "__main__":
    cli()


def read_ulira(folder):
    """{(model, method): report} from scripts/ulira.py's `<folder>/<model>/<method>.json`, or {}."""
    reports = {}
    for path in sorted(glob.glob(os.path.join(glob.escape(folder), "*", "*.json"))):
        try:
            with open(path) as f:
                report = json.load(f)
            reports[report["model"], report["method"]] = report
        except (OSError, ValueError, KeyError, TypeError) as err:
            print(f"warning: {path}: unreadable U-LiRA result ({type(err).__name__}: {err}); left out", file=sys.stderr)
    return reports


def ulira_paired(folder, ulira, resamples=500):
    """Markdown: U-LiRA differences between rows that share targets and shadow halves, each with a
    95% paired-bootstrap interval over the targets (evaluation/ulira.py): every method against
    Retrain on the same model, and the sparser model against the denser for each method."""
    import numpy as np

    from evaluation.ulira import paired_difference

    arrays = {}
    for model, method in ulira:
        try:
            with np.load(paths.ulira_file(folder, model, method, ".npz")) as saved:
                arrays[model, method] = (saved["stats"], saved["forgotten"])
        except (OSError, KeyError, ValueError):
            continue
    models = sorted({m for m, _ in arrays}, key=lambda m: (m != "dense", m))
    pairs = [
        (f"{NAMES.get(me, me)} − Retrain, {mo}", (mo, REFERENCE_METHOD), (mo, me))
        for mo in models
        for (m2, me) in arrays
        if m2 == mo and me != REFERENCE_METHOD
    ]
    if len(models) == 2:
        pairs += [
            (f"{NAMES.get(me, me)}: {models[1]} − {models[0]}", (models[0], me), (models[1], me))
            for me in sorted({me for _, me in arrays}, key=method_order)
        ]
    lines = []
    for label, first, second in pairs:
        if first in arrays and second in arrays and np.array_equal(arrays[first][1], arrays[second][1]):
            forgotten = arrays[first][1].astype(bool)
            d = paired_difference(arrays[first][0], arrays[second][0], forgotten, ~forgotten, bootstrap=resamples)
            low, high = d["interval"] or (float("nan"), float("nan"))
            shows = "no difference found" if low <= 0 <= high else ("higher" if low > 0 else "lower")
            lines.append(f"| {label} | {100 * d['difference']:+.1f} | [{100 * low:+.1f}, {100 * high:+.1f}] | {shows} |")
    if not lines:
        return ""
    head = [
        "",
        "#### U-LiRA: paired differences",
        "",
        "| difference (percentage points) | mean | 95% paired-bootstrap interval | |",
        "|---|---|---|---|",
    ]
    tail = ["", "Both rows of a difference are attacked on the same targets with the same shadow halves, so each bootstrap "
            "resample draws the same targets for both; an interval that holds 0 finds no difference. Against Retrain, "
            "higher means the method leaves more for the attack to find than exact unlearning does."]  # fmt: skip
    return "\n".join(head + lines + tail) + "\n"
