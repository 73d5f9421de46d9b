"""A grid's "_calibrate": one calibration task per method, model and scenario, its measured seeds
after it, and the summary's calibration section and curves (the real Slurm run is in test_workflow_sweep.py,
beside its cluster)."""

import json
import os
import re
import sys
from collections import defaultdict

import pytest

from tests.test_workflow_sweep import SUMMARIZE, SWEEP, literal_options, run, tiny_grid


def calibrated_grid(path, calibrate=None, target_seeds=(1, 2)):
    grid = json.loads(tiny_grid(path, methods=("retrain", "GA"), seeds=(1,)).read_text())
    grid["scenarios"]["random"] = {"class_to_replace": -1, "num_indexes_to_replace": 20}
    grid["methods"]["retrain"]["_seeds"] = list(target_seeds)
    grid["methods"]["GA"]["_calibrate"] = calibrate or {"option": "unlearn_lr", "range": "1e-5,10", "target": "retrain", "seed": 9}
    iu = {"option": "alpha", "range": [0.1, 100], "target": 40, "seed": 9, "steps": 5, "curve": True}
    grid["methods"]["wfisher"] = {"_calibrate": iu}
    path.write_text(json.dumps(grid))
    return path


def options_of(task):
    return literal_options(task["cmd"][2:])


def test_a_calibrated_method_gets_one_calibration_per_model_and_scenario_and_its_seeds_reuse_the_value(tmp_path):
    from workflow.sweep import expand, load_grid

    out = tmp_path / "out"
    masks, tasks = expand(load_grid(calibrated_grid(tmp_path / "grid.json")), str(out))
    by_name = {t["name"]: t for t in masks + tasks}
    stages = [t["stage"] for t in tasks]
    assert stages == sorted(stages, key=("unlearn", "calibration", "calibrated").index)  # a task waits only for earlier ones
    position = {t["name"]: i for i, t in enumerate(masks + tasks)}
    assert all(position[name] < position[t["name"]] for t in tasks for name in t["after"])

    calibrations = [t for t in tasks if t["stage"] == "calibration"]
    assert len(calibrations) == 2 * 2 * 2  # GA and IU, on 2 models, in 2 scenarios
    for task in calibrations:
        o, labels = options_of(task), task["labels"]
        assert labels["role"] == "calibration" and o["--seed"] == "9"
        assert task["result"].endswith(f"/{labels['method']}/calibration/seed9/{labels['method']}eval_result.json")
        if labels["method"] == "GA":
            assert (o["--calibrate"], o["--calibrate_range"]) == ("unlearn_lr", "1e-5,10") and "--unlearn_lr" not in o
            targets = [by_name[name] for name in task["after"][1:]]  # after its mask: Retrain's two seeds on this model and scenario
            assert [(t["labels"]["method"], t["labels"]["model"], t["labels"]["scenario"]) for t in targets] == [
                ("retrain", labels["model"], labels["scenario"])
            ] * 2
            assert o["--calibrate_target"].split(",") == [t["result"] for t in targets]
            assert "--calibrate_curve" not in o
        else:
            searched = (o["--calibrate"], o["--calibrate_target"], o["--calibrate_range"], o["--calibrate_steps"])
            assert searched == ("alpha", "40", "0.1,100", "5")
            assert "--calibrate_curve" in o and task["after"] == [masks[0]["name"]]  # a number: it waits for its mask alone
    measured = [t for t in tasks if t["stage"] == "calibrated"]
    assert len(measured) == len(calibrations)  # one measured seed each
    for task in measured:
        (calibration_task,) = [by_name[name] for name in task["after"][1:]]
        assert options_of(task)["--calibrated_from"] == calibration_task["result"] and options_of(task)["--seed"] == "1"
        assert {k: task["labels"][k] for k in ("model", "scenario", "method")} == {
            k: calibration_task["labels"][k] for k in ("model", "scenario", "method")
        }
        assert "role" not in task["labels"] and "--calibrate" not in options_of(task)


@pytest.mark.parametrize(
    "calibrate, refusal",
    [
        ({"option": "unlearn_lr", "range": "1e-5,10", "target": "retrain", "seed": 1}, "seed 1: also a measured seed"),
        ({"option": "unlearn_lr", "range": "1e-5,10", "target": "nosuch", "seed": 9}, "target 'nosuch': a number, or another method"),
        ({"option": "unlearn_lr", "range": "1e-5,10", "target": 140, "seed": 9}, "target 140: a percentage from 0 to 100"),
        ({"option": "unlearn_lr", "range": "10,1e-5", "target": "retrain", "seed": 9}, "--calibrate_range 10,1e-5: expected 0 < LOW"),
        ({"option": "momentum", "range": "1e-5,10", "target": "retrain", "seed": 9}, "option 'momentum': one of unlearn_lr, alpha"),
        ({"option": "unlearn_lr", "range": "1e-5,10", "target": "retrain"}, "needs ['seed']"),
        ({"option": "unlearn_lr", "range": "1e-5,10", "target": "retrain", "seed": 9, "stpes": 3}, "unknown keys ['stpes']"),
    ],
)
def test_a_bad_calibration_in_a_grid_is_one_line(tmp_path, calibrate, refusal):
    grid_file = calibrated_grid(tmp_path / "grid.json", calibrate)
    result = run([SWEEP, grid_file, "--out", tmp_path / "out", "--dry-run"], timeout=120)
    assert result.returncode == 2 and refusal in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_a_calibration_whose_target_comes_later_or_is_calibrated_or_varies_its_option_is_refused(tmp_path):
    grid = json.loads(calibrated_grid(tmp_path / "grid.json").read_text())
    grid["methods"] = {"GA": grid["methods"]["GA"], "retrain": grid["methods"]["retrain"]}  # the target after its method
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    later = run([SWEEP, tmp_path / "grid.json", "--out", tmp_path / "out", "--dry-run"], timeout=120)
    assert later.returncode == 2 and "list it earlier" in later.stderr
    grid["methods"]["retrain"]["_calibrate"] = {"option": "unlearn_lr", "range": "1e-5,10", "target": 50, "seed": 9}
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    chained = run([SWEEP, tmp_path / "grid.json", "--out", tmp_path / "out", "--dry-run"], timeout=120)
    assert chained.returncode == 2 and "that method is calibrated itself" in chained.stderr
    search = {"option": "unlearn_lr", "range": "1e-5,10", "target": 50, "seed": 9}
    grid["methods"] = {"GA": {"unlearn_lr": [0.1, 0.2], "_calibrate": search}}
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    varied = run([SWEEP, tmp_path / "grid.json", "--out", tmp_path / "out", "--dry-run"], timeout=120)
    assert varied.returncode == 2 and "unlearn_lr is calibrated, so it cannot also be a list" in varied.stderr


def test_slurm_gets_one_array_per_stage_each_after_the_earlier_ones(tmp_path):
    result = run([SWEEP, calibrated_grid(tmp_path / "grid.json"), "--out", tmp_path / "out", "--backend", "slurm", "--dry-run"])
    assert result.returncode == 0, result.stderr
    dependencies = re.findall(r"^\$ sbatch --parsable(?: '--dependency=([^']+)')? \S+/(\w+)\.sbatch$", result.stdout, re.M)
    assert dependencies == [
        ("", "masks"),
        ("afterok:<masks job id>", "unlearn"),
        ("afterok:<masks job id>:<unlearn job id>", "calibration"),
        ("afterok:<masks job id>:<unlearn job id>:<calibration job id>", "calibrated"),
    ]
    assert "#SBATCH --array=0-7" in result.stdout  # the 8 Retrain runs, the 8 calibrations, the 8 measured runs


def test_a_task_whose_dependency_failed_is_skipped_and_so_are_its_own_dependants(tmp_path):
    from workflow import sweep

    ok, fail = [sys.executable, "-c", "pass"], [sys.executable, "-c", "raise SystemExit(3)"]
    tasks = [
        {"name": "a", "cmd": fail, "after": []},
        {"name": "b", "cmd": ok, "after": []},
        {"name": "c", "cmd": ok, "after": ["a", "b"]},
        {"name": "d", "cmd": ok, "after": ["c"]},
        {"name": "e", "cmd": ok, "after": ["b"]},
    ]
    results = sweep.LocalRunner(jobs=2, gpus=[], log_dir=str(tmp_path)).run_all([], tasks)
    assert results["a"].startswith("failed (exit 3") and results["b"] == results["e"] == "ok"
    assert (results["c"], results["d"]) == ("skipped (a failed)", "skipped (c failed)")


# ---------------------------------------------------------------- summarize


def fake(path, method, model, seed, ua, ra, ta, labels, calibration=None):
    path.mkdir(parents=True, exist_ok=True)
    result = {"method": method, "UA": ua, "MIA-Efficacy": 50.0, "RA": ra, "TA": ta, "RTE": 0.1,
              "sparsity": 0.5 if "sparse" in model else 0.0, "scenario": "class-wise", "args": {"seed": seed},
              **({"calibration": calibration} if calibration else {})}  # fmt: skip
    (path / f"{method}eval_result.json").write_text(json.dumps(result))
    (path / "task.json").write_text(json.dumps({"name": path.name, "labels": {"model": model, "scenario": "class-wise", "method": method,
                                                                               "seed": seed, **labels}}))  # fmt: skip


def test_summarize_leaves_calibration_runs_out_of_the_table_and_shows_their_choice_and_curves(tmp_path):
    for model, (chosen, measured) in {"dense": (0.01, (38.0, 42.0)), "50% sparse": (0.003, (30.0, 34.0))}.items():
        fake(tmp_path / model / "retrain1", "retrain", model, 1, 40.0, 99.0, 90.0, {})
        steps = [{"value": v, "metric": ua, "seconds": 1.0, "accuracies": {"UA": ua, "RA": 99 - ua / 2, "TA": 90 - ua / 3}}
                 for v, ua in ((1e-4, 5.0), (1.0, 100.0), (chosen, 40.5))]  # fmt: skip
        calibration = {"option": "unlearn_lr", "metric": "UA", "target": 40.0, "range": [1e-4, 1.0], "chosen": chosen,
                       "chosen_metric": 40.5, "seed": 9, "steps": steps, "flags": []}  # fmt: skip
        fake(tmp_path / model / "cal", "GA", model, 9, 40.5, 79.0, 76.0, {"role": "calibration"}, calibration)
        for seed, ua in zip((1, 2), measured):
            reused = {"from": "x", "option": "unlearn_lr", "chosen": chosen, "seed": 9, "metric": "UA", "target": 40.0}
            fake(tmp_path / model / f"ga{seed}", "GA", model, seed, ua, 80.0, 77.0, {}, reused)
    result = run([SUMMARIZE, tmp_path])
    assert result.returncode == 0, result.stderr
    assert "6 results summarised" in result.stdout and "curves: 1 figure in" in result.stdout
    assert re.search(r"\| GA \| dense \| 40\.00±2\.83 \(0\.00\) \|.* \| 2 \|", result.stdout)  # seeds 1 and 2, not the calibration's 9
    section = result.stdout[result.stdout.index("### Calibration") :]
    assert "| class-wise | GA | dense | — | unlearn_lr | UA 40.00 | 0.0001–1 | 0.01 | 40.50 (seed 9) | 40.00 (2) | 3 | — |" in section
    assert "| class-wise | GA | 50% sparse | — | unlearn_lr | UA 40.00 | 0.0001–1 | 0.003 | 40.50 (seed 9) | 32.00 (2) | 3 | — |" in section
    curves = sorted(os.listdir(tmp_path / "summary_curves"))
    assert curves == ["class-wise_GA.png"]
    assert (tmp_path / "summary_curves" / curves[0]).stat().st_size > 10_000


def test_only_calibration_runs_is_one_line(tmp_path):
    calibration = {"option": "alpha", "metric": "UA", "target": 40.0, "range": [0.1, 1.0], "chosen": 0.3, "chosen_metric": 40.5,
                   "seed": 9, "steps": [], "flags": []}  # fmt: skip
    fake(tmp_path / "cal", "wfisher", "dense", 9, 40.5, 79.0, 76.0, {"role": "calibration"}, calibration)
    result = run([SUMMARIZE, tmp_path])
    assert result.returncode == 2 and "only calibration runs" in result.stderr


# ---------------------------------------------------------------- the matched comparison


def test_minimum_detectable_difference_is_the_textbook_one():
    from workflow.matched import minimum_detectable

    # One-sample (paired) t, two-sided 0.05, 80% power: d = 0.996 at n = 10 (Cohen's tables; a simulation gives 0.800).
    assert abs(minimum_detectable(1.0, 10, 0.05) - 0.996) < 0.001
    assert abs(minimum_detectable(2.5, 10, 0.05) - 2.5 * 0.996) < 0.003  # scales with the spread
    assert minimum_detectable(1.0, 5, 0.05 / 20) > minimum_detectable(1.0, 5, 0.05) > minimum_detectable(1.0, 10, 0.05)
    assert minimum_detectable(1.0, 1, 0.05) is None


def test_a_matched_study_is_summarised_with_holm_tost_and_both_floors(tmp_path):
    from scipy import stats

    grid = {"comparisons": {"models": ["dense", "95% sparse"], "methods": [["FT", "FT_prune"]]},
            "matched": {"margin": 2.0, "power": 0.8}, "scenarios": {"class-wise": {}},
            "methods": {"raw": {}, "retrain": {}, "FT": {"_calibrate": {}},
                        "FT_prune": {"alpha": [1e-4, 1e-3], "_calibrate": {}}}}  # fmt: skip
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    # Per original model k: Retrain's RA, TA; FT's RA and TA gaps (sparse a little closer); l1-sparse far closer at 1e-3.
    costs = {("dense", "FT", ""): (4.0, 0.5), ("95% sparse", "FT", ""): (3.0, 0.4),
             ("dense", "FT_prune", "alpha=0.0001"): (4.1, 0.2), ("95% sparse", "FT_prune", "alpha=0.0001"): (3.2, 0.9),
             ("dense", "FT_prune", "alpha=0.001"): (0.5, 0.1), ("95% sparse", "FT_prune", "alpha=0.001"): (0.4, 0.3)}  # fmt: skip
    endpoint = defaultdict(dict)
    for k in range(1, 6):
        for model in ("dense", "95% sparse"):
            for seed, wobble in ((1, 0.2), (2, -0.2)):
                ra, ta = 98.0 + (k % 3) * 0.5 + wobble, 87.0 + wobble / 2
                fake_run(tmp_path, "retrain", "", model, k, seed, 100.0, ra, ta)
                for (m, method, setting), (mean, spread) in costs.items():
                    if m == model:
                        cost = mean + spread * ((k * 7 + len(setting)) % 5 - 2) / 2  # varies by original model, not by seed
                        fake_run(tmp_path, method, setting, model, k, seed, 99.5, ra - cost, ta - cost)
                        endpoint[model, method, setting][k] = cost  # both gaps are `cost`: so is their mean
    result = run([SUMMARIZE, tmp_path])
    assert result.returncode == 0, result.stderr
    text = result.stdout[result.stdout.index("### Matched forgetting") :]
    primary = text[: text.index("**secondary")]
    assert "| class-wise | FT | dense | 99.50 | 100.00 | 0.50 | 5 |" in text  # matched UA beside the target
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in primary.splitlines() if " − " in line and line.startswith("| ")}
    family = 3 * 1 + 2 * 2  # 3 calibrated method settings sparse − dense, 2 settings x 2 models against FT
    assert len(rows) == family, rows
    checked = [("FT: 95% sparse − dense", ("dense", "FT", ""), ("95% sparse", "FT", "")),
               ("l1-sparse (alpha=0.001) − FT, dense", ("dense", "FT", ""), ("dense", "FT_prune", "alpha=0.001"))]  # fmt: skip
    for label, first, second in checked:
        diffs = [endpoint[second][k] - endpoint[first][k] for k in range(1, 6)]
        assert rows[label][1] == f"{sum(diffs) / 5:+.2f} (n=5)"
        lower = stats.ttest_1samp(diffs, -2.0, alternative="greater").pvalue
        upper = stats.ttest_1samp(diffs, 2.0, alternative="less").pvalue
        p_tost = max(lower, upper)
        holm_tost = float(rows[label][4])
        assert holm_tost >= min(1.0, p_tost) - 5e-4 and holm_tost <= min(1.0, family * p_tost) + 5e-4
    assert rows["l1-sparse (alpha=0.001) − FT, dense"][-1].startswith("different: l1-sparse (alpha=0.001) closer")
    assert "| same initialisation | class-wise | dense | 0.30 | 5 |" in primary  # seeds 1 and 2: RA 0.4 and TA 0.2 apart
    # independent initialisations: same seed, other original models: RA apart by 0.5 or 1.0 (k mod 3), TA equal
    independent = [abs((a % 3) - (b % 3)) * 0.5 / 2 for a in range(1, 6) for b in range(a + 1, 6)] * 2
    assert f"| independent initialisations | class-wise | dense | {sum(independent) / len(independent):.2f} | 20 |" in primary


def fake_run(root, method, setting, model, train_seed, seed, ua, ra, ta):
    folder = root / model / f"k{train_seed}" / method / (setting or "-") / f"seed{seed}"
    labels = {"setting": setting, "options": {}} if setting else {}
    fake(folder, method, model, seed, ua, ra, ta, {"train_seed": train_seed, **labels})
