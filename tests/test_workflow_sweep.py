"""scripts/sweep.py and scripts/summarize.py: the paper's commands, local runs that resume
after a kill, a real one-node Slurm, and a summary that survives bad result files."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.slurm_cluster import OneNodeSlurm, why_not_available

SWEEP = os.path.join(ROOT, "scripts", "sweep.py")
SUMMARIZE = os.path.join(ROOT, "scripts", "summarize.py")


def run(cmd, timeout=900, **kwargs):
    return subprocess.run([sys.executable, *map(str, cmd)], capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kwargs)


# A small share of digits (300 training, 100 validation and 100 test images) keeps the runs short.
SMALL_DIGITS = {"dataset": "digits", "arch": "resnet20s", "batch_size": 128, "train_per_class": 30, "test_per_class": 10}


def tiny_grid(path, methods=("GA", "FT"), seeds=(1, 2)):
    grid = {
        "common": dict(SMALL_DIGITS),
        "masks": {"omp": {"options": {"epochs": 2, "decreasing_lr": "50", "rate": 0.5, "pruning_times": 2, "prune_type": "lt"}}},
        "models": {
            "dense": {"mask": "omp", "file": "0model_SA_best.pth.tar"},
            "50% sparse": {"mask": "omp", "file": "1model_SA_best.pth.tar"},
        },
        "scenarios": {"class-wise": {"class_to_replace": 1}},
        "methods": {m: {"unlearn_epochs": 1, "unlearn_lr": 0.001} for m in methods},
        "seeds": list(seeds),
    }
    with open(path, "w") as f:
        json.dump(grid, f)
    return path


# ---------------------------------------------------------------- the shipped CIFAR-10 grid


def readme_commands(script):
    with open(os.path.join(ROOT, "docs", "commands.md")) as f:
        page = f.read()
    section = page[page.index("## The paper's commands") : page.index("### Trojan model cleanse")]
    return [shlex.split(line)[2:] for line in section.splitlines() if line.startswith(f"python -u {script}")]


def literal_options(words):
    """{option: value} for the options whose value is written out (not ${...})."""
    options, i = {}, 0
    while i < len(words):
        if words[i].startswith("--"):
            value = words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("--") else True
            if not (isinstance(value, str) and "$" in value):
                options[words[i]] = value
            i += 2 if value is not True else 1
        else:
            i += 1
    return options


def test_dry_run_of_the_cifar10_grid_prints_the_readme_commands(tmp_path):
    result = run([SWEEP, "scripts/grids/cifar10_resnet18.json", "--out", tmp_path / "cifar", "--dry-run"])
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "cifar").exists(), "--dry-run wrote files"
    printed = [shlex.split(line) for line in result.stdout.splitlines() if not line.startswith("#")]
    forget = [literal_options(cmd[2:]) for cmd in printed if cmd[1].endswith("main_forget.py")]
    assert len(forget) == 2 * 2 * 13 * 10  # models x scenarios x methods (the Original, the six, the six later ones) x seeds
    checked = 0
    for words in readme_commands("main_forget.py"):
        expected = literal_options(words)
        method = expected["--unlearn"]
        ours = [o for o in forget if o["--unlearn"] == method and o["--class_to_replace"] == "0" and o["--seed"] == "1"]
        assert len(ours) == 2, method  # dense and sparse
        for option, value in expected.items():
            assert all(o.get(option) == value for o in ours), (method, option, value, ours[0].get(option))
        checked += 1
    assert checked == 12
    random_forgetting = [o for o in forget if o["--class_to_replace"] == "-1"]
    assert len(random_forgetting) == 260 and all(o["--num_indexes_to_replace"] == "4500" for o in random_forgetting)
    imp = [literal_options(cmd[2:]) for cmd in printed if cmd[1].endswith("main_imp.py")]
    omp_readme = literal_options(readme_commands("main_imp.py")[0])
    assert len(imp) == 1 and all(imp[0].get(k) == v for k, v in omp_readme.items() if k != "--data"), (imp, omp_readme)
    assert imp[0]["--rate"] == "0.95" and imp[0]["--arch"] == "resnet18"


def test_dry_run_with_slurm_prints_both_arrays_and_the_dependency(tmp_path):
    grid = tiny_grid(tmp_path / "grid.json")
    result = run([SWEEP, grid, "--out", tmp_path / "out", "--backend", "slurm", "--dry-run", "--sbatch", "--partition gpu --gres gpu:1"])
    assert result.returncode == 0, result.stderr
    assert "#SBATCH --array=0-0" in result.stdout and "#SBATCH --array=0-7" in result.stdout
    assert "#SBATCH --partition gpu" in result.stdout and "#SBATCH --gres gpu:1" in result.stdout
    assert "--dependency=afterok:<masks job id>" in result.stdout
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- local runs


def started(output):
    return [line for line in output.splitlines() if line.startswith("[start]")]


@pytest.mark.slow
def test_a_killed_local_sweep_reruns_only_the_missing_tasks(tmp_path):
    grid = tiny_grid(tmp_path / "grid.json", methods=("GA",), seeds=(1, 2))
    out = tmp_path / "out"
    cmd = [sys.executable, SWEEP, str(grid), "--out", str(out), "--jobs", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    results = lambda: sorted(out.glob("unlearn/**/*eval_result.json"))  # noqa: E731
    deadline = time.time() + 600
    while len(results()) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and every task it runs
    proc.wait()
    done_before = len(results())
    assert 2 <= done_before < 4, "the sweep was not stopped midway"

    rerun = run([SWEEP, grid, "--out", out, "--jobs", "2"])
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"5 tasks, {done_before + 1} finished, 0 mask and {4 - done_before} unlearning tasks to run" in rerun.stdout
    assert len(started(rerun.stdout)) == 4 - done_before
    assert len(results()) == 4

    again = run([SWEEP, grid, "--out", out])
    assert again.returncode == 0 and started(again.stdout) == []

    summary = run([SUMMARIZE, out])
    assert summary.returncode == 0, summary.stderr
    assert "4 results summarised" in summary.stdout
    assert re.search(r"\| GA \| dense \| .* \| 2 \|", summary.stdout) and re.search(r"\| GA \| 50% sparse \| .* \| 2 \|", summary.stdout)
    assert (out / "summary.md").exists() and (out / "summary.csv").exists() and (out / "summary.png").exists()


# ---------------------------------------------------------------- a real Slurm


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    reason = why_not_available()
    if reason:
        pytest.skip(reason)
    cluster = OneNodeSlurm(tmp_path_factory.mktemp("slurm")).start()
    yield cluster
    cluster.stop()


@pytest.mark.slow
def test_a_sweep_runs_through_slurm_job_arrays(slurm, tmp_path):
    grid = tiny_grid(tmp_path / "grid.json", methods=("retrain",), seeds=(1,))
    out = tmp_path / "out"
    submit = run([SWEEP, grid, "--out", out, "--backend", "slurm"], env=slurm.env)
    assert submit.returncode == 0, submit.stdout + submit.stderr
    ids = dict(re.findall(r"submitted (\w+) array: job (\d+)", submit.stdout))
    assert set(ids) == {"masks", "unlearn"}
    job = subprocess.run(["scontrol", "show", "job", ids["unlearn"]], env=slurm.env, capture_output=True, text=True).stdout
    assert f"Dependency=afterok:{ids['masks']}" in job, job  # the unlearning array waits for the mask array
    assert slurm.wait_until_empty(timeout=600), slurm.queue()
    logs = sorted((out / "slurm" / "logs").iterdir())
    assert len(logs) == 1 + 2, logs  # one mask task, then retrain from the dense and the sparse model
    results = sorted(out.glob("unlearn/**/*eval_result.json"))
    assert len(results) == 2, [p.read_text()[-400:] for p in logs]
    mask_done = os.path.getmtime(out / "masks" / "omp" / "imp_summary.json")
    assert all(os.path.getmtime(p) > mask_done for p in results)

    summary = run([SUMMARIZE, out])
    assert summary.returncode == 0, summary.stderr
    assert "2 results summarised" in summary.stdout
    dense_ua = next(json.loads(p.read_text())["UA"] for p in results if "/dense/" in str(p))
    assert f"| Retrain | dense | {dense_ua:.2f}±0.00 (0.00)" in summary.stdout, summary.stdout  # one seed: no spread
    assert "| Retrain | 50% sparse |" in summary.stdout

    resubmit = run([SWEEP, grid, "--out", out, "--backend", "slurm"], env=slurm.env)
    assert "3 tasks, 3 finished" in resubmit.stdout and "submitted" not in resubmit.stdout


@pytest.mark.slow
def test_a_calibrated_grid_runs_through_slurm_arrays_in_order(slurm, tmp_path):
    grid = json.loads(tiny_grid(tmp_path / "grid.json", methods=("retrain", "GA"), seeds=(1,)).read_text())
    # GA on a 2-epoch digits model: a learning rate near 10 forgets the whole class (or breaks the model: too strong).
    grid["methods"]["GA"] = {"unlearn_epochs": 1, "_calibrate": {"option": "unlearn_lr", "range": "1e-5,10", "target": "retrain",
                                                                 "seed": 9, "steps": 3, "tolerance": 10, "curve": True}}  # fmt: skip
    grid["models"] = {"dense": grid["models"]["dense"]}
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    out = tmp_path / "out"
    submit = run([SWEEP, tmp_path / "grid.json", "--out", out, "--backend", "slurm"], env=slurm.env)
    assert submit.returncode == 0, submit.stdout + submit.stderr
    ids = dict(re.findall(r"submitted (\w+) array: job (\d+)", submit.stdout))
    assert list(ids) == ["masks", "unlearn", "calibration", "calibrated"]
    job = subprocess.run(["scontrol", "show", "job", ids["calibrated"]], env=slurm.env, capture_output=True, text=True).stdout
    waits_for = re.search(r"Dependency=(\S+)", job).group(1)
    assert all(f"afterok:{ids[stage]}" in waits_for for stage in ("masks", "unlearn", "calibration")), job
    assert slurm.wait_until_empty(timeout=600), slurm.queue()
    logs = sorted((out / "slurm" / "logs").iterdir())
    retrain = json.loads(next(out.glob("unlearn/dense/class-wise/retrain/seed1/retraineval_result.json")).read_text())
    calibrated = json.loads((out / "unlearn/dense/class-wise/GA/calibration/seed9/GAeval_result.json").read_text())
    measured = json.loads((out / "unlearn/dense/class-wise/GA/seed1/GAeval_result.json").read_text())
    c = calibrated["calibration"]
    assert c["target"] == retrain["UA"]
    assert c["target_files"] == [str(out / "unlearn/dense/class-wise/retrain/seed1/retraineval_result.json")]
    assert measured["args"]["unlearn_lr"] == c["chosen"] and measured["calibration"]["seed"] == 9, [p.read_text()[-400:] for p in logs]
    assert os.path.getmtime(out / "unlearn/dense/class-wise/GA/seed1/GAeval_result.json") > os.path.getmtime(
        out / "unlearn/dense/class-wise/GA/calibration/seed9/GAeval_result.json"
    )
    summary = run([SUMMARIZE, out])
    assert summary.returncode == 0 and "### Calibration" in summary.stdout and "2 results summarised" in summary.stdout


# ---------------------------------------------------------------- summarize


def fake_result(path, method, sparsity, seed, ua, mia, ra, ta, rte=0.5, attack=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {"method": method, "UA": ua, "MIA-Efficacy": mia, "RA": ra, "TA": ta, "RTE": rte, "sparsity": sparsity,
              "scenario": "class-wise", "args": {"seed": seed}}  # fmt: skip
    if attack is not None:  # the held-out (training-privacy) attack's confidence score
        result["SVC_MIA_training_privacy"] = {"confidence": attack}
    path.write_text(json.dumps(result))


def test_summarize_marks_mia_efficacy_where_the_attack_is_near_chance(tmp_path):
    fake_result(tmp_path / "r" / "retraineval_result.json", "retrain", 0.0, 1, 100, 100, 99, 90, attack=0.53)
    fake_result(tmp_path / "f1" / "FTeval_result.json", "FT", 0.0, 1, 20, 30, 99, 90, attack=0.70)
    fake_result(tmp_path / "f2" / "FTeval_result.json", "FT", 0.0, 2, 20, 30, 99, 90, attack=0.74)
    result = run([SUMMARIZE, tmp_path])
    assert result.returncode == 0, result.stderr
    rows = {line.split(" | ")[0][2:]: line for line in result.stdout.splitlines() if line.startswith("| ") and "method" not in line}
    assert rows["Retrain"].split(" | ")[3] == "100.00±0.00 (0.00)†"
    assert rows["Retrain"].endswith("| 53.00±0.00 |")
    assert rows["FT"].split(" | ")[3] == "30.00±0.00 (70.00)"  # 72% on held-out samples: the attack works
    assert rows["FT"].endswith("| 72.00±2.83 |")
    assert "† The shadow attack behind MIA-Efficacy" in result.stdout
    csv_rows = (tmp_path / "summary.csv").read_text().splitlines()
    assert csv_rows[0].endswith("mia_attack_acc_mean,mia_attack_acc_std,tow_mean,tow_ci95") and csv_rows[1].endswith(",53.0,0.0,1.0,")
    # ToW: per FT run (1 - 80/100) * (1 - 0) * (1 - 0) against Retrain; two equal runs, no spread
    assert rows["FT"].split(" | ")[7] == "0.200±0.000"


def test_summarize_names_missing_and_corrupt_files_and_summarises_the_rest(tmp_path):
    fake_result(tmp_path / "a" / "retrainevaluate" / "retraineval_result.json", "retrain", 0.0, 1, 100, 100, 99, 94)
    fake_result(tmp_path / "b" / "retraineval_result.json", "retrain", 0.0, 2, 100, 100, 97, 92)
    fake_result(tmp_path / "c" / "FTeval_result.json", "FT", 0.0, 1, 10, 20, 99, 95)
    fake_result(tmp_path / "d" / "FTeval_result.json", "FT", 0.0, 2, 20, 30, 99, 95)
    fake_result(tmp_path / "e" / "FTeval_result.json", "FT", 95.0, 1, 40, 50, 98, 93)
    fake_result(tmp_path / "o" / "raweval_result.json", "raw", 0.0, 1, 0, 5, 100, 95)
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "GAeval_result.json").write_text('{"method": "GA", "UA": 3')  # cut off mid-write
    missing = tmp_path / "g" / "GAeval_result.json"
    manifest = {"tasks": [{"name": "GA dense class-wise seed 1", "result": str(missing), "labels": {"method": "GA"}}]}
    (tmp_path / "sweep.json").write_text(json.dumps(manifest))

    result = run([SUMMARIZE, tmp_path, "--out", tmp_path / "report" / "table.md"])
    assert result.returncode == 0, result.stderr
    assert f"{tmp_path / 'f' / 'GAeval_result.json'}: unreadable" in result.stderr
    assert f"{missing}: missing (GA dense class-wise seed 1" in result.stderr
    assert "6 results summarised, 2 left out" in result.stdout
    # FT dense: UA 15±7.07, gap |15 - 100| = 85; MIA 25 (gap 75); RA 99 (gap 1); TA 95 (gap 2); average 40.75
    assert "| FT | dense | 15.00±7.07 (85.00) | 25.00±7.07 (75.00) | 99.00±0.00 (1.00) | 95.00±0.00 (2.00) | 40.75 |" in result.stdout
    assert "| Retrain | dense | 100.00±0.00 (0.00) | 100.00±0.00 (0.00) | 98.00±1.41 (0.00) | 93.00±1.41 (0.00) | 0.00 |" in result.stdout
    assert "| FT | 95% sparse | 40.00±0.00 | 50.00±0.00 | 98.00±0.00 | 93.00±0.00 | n/a |" in result.stdout  # no sparse Retrain
    # raw is the Original row: first, and no gap to Retrain
    table = [line for line in result.stdout.splitlines() if line.startswith("| ") and "method" not in line]
    assert table[0].startswith("| Original | dense | 0.00±0.00 | 5.00±0.00 | 100.00±0.00 | 95.00±0.00 | — |"), table[0]
    for suffix in (".md", ".csv", ".png"):
        assert (tmp_path / "report" / f"table{suffix}").stat().st_size > 0


def test_summarize_pairs_seeds_to_compare_sparse_with_dense_and_l1_sparse_with_ft(tmp_path):
    def labelled(model, method, sparsity, seed, ua):
        folder = tmp_path / model / method / f"seed{seed}"
        fake_result(folder / f"{method}eval_result.json", method, sparsity, seed, ua, 100, 99, 90)
        (folder / "task.json").write_text(json.dumps({"labels": {"model": model, "method": method, "seed": seed}}))

    for seed in (1, 2, 3):
        for model, sparsity in (("dense", 0.0), ("sparse", 95.0)):
            labelled(model, "retrain", sparsity, seed, 100)
        # Avg. Gap = (100 - UA) / 4: FT dense 10, 12, 14; FT sparse 6, 8, 10 (4 lower on every seed)
        labelled("dense", "FT", 0.0, seed, 100 - 4 * (8 + 2 * seed))
        labelled("sparse", "FT", 95.0, seed, 100 - 4 * (4 + 2 * seed))
        # l1-sparse dense 9, 13, 11: lower than FT on seeds 1 and 3 only; sparse equal to FT
        labelled("dense", "FT_prune", 0.0, seed, 100 - 4 * {1: 9, 2: 13, 3: 11}[seed])
        labelled("sparse", "FT_prune", 95.0, seed, 100 - 4 * (4 + 2 * seed))

    result = run([SUMMARIZE, tmp_path])
    assert result.returncode == 0, result.stderr
    section = result.stdout[result.stdout.index("### Avg. Gap seed by seed") :]
    assert "| FT | 12.00±2.00 | 8.00±2.00 | -4.00±0.00 (3/3) |" in section
    assert "| l1-sparse | 11.00±2.00 | 8.00±2.00 | -3.00±2.00 (3/3) |" in section
    assert "| l1-sparse − FT | -1.00±2.00 (2/3) | +0.00±0.00 (0/3) |" in section
    assert "Retrain |" not in section


def test_summarize_adds_the_u_lira_column_when_its_results_are_there(tmp_path):
    fake_result(tmp_path / "r" / "retraineval_result.json", "retrain", 0.0, 1, 100, 100, 99, 90)
    fake_result(tmp_path / "f" / "FTeval_result.json", "FT", 0.0, 1, 20, 30, 99, 90)
    plain = run([SUMMARIZE, tmp_path])
    assert plain.returncode == 0 and "U-LiRA" not in plain.stdout
    (tmp_path / "ulira" / "dense").mkdir(parents=True)
    report = {"model": "dense", "method": "FT", "balanced_accuracy": 0.6312, "reference_models": 16}
    (tmp_path / "ulira" / "dense" / "FT.json").write_text(json.dumps(report))
    result = run([SUMMARIZE, tmp_path])
    assert result.returncode == 0, result.stderr
    rows = {line.split(" | ")[0][2:]: line for line in result.stdout.splitlines() if line.startswith("| ") and "method" not in line}
    assert rows["FT"].endswith("| 63.12 (K=16) |") and rows["Retrain"].endswith("| n/a |")
    assert "U-LiRA acc.: scripts/ulira.py's per-example attack" in result.stdout
    missing = run([SUMMARIZE, tmp_path, "--ulira", tmp_path / "nowhere"])
    assert missing.returncode == 2 and missing.stderr.startswith("error: --ulira")


def test_local_workers_get_their_own_gpu_and_a_share_of_the_threads(tmp_path, monkeypatch):
    from workflow import sweep

    monkeypatch.setattr(sweep.os, "cpu_count", lambda: 8)
    show = "import os, time; time.sleep(0.5); print(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['OMP_NUM_THREADS'])"
    tasks = [{"name": f"task {i}", "cmd": [sys.executable, "-c", show], "after": None} for i in range(4)]
    runner = sweep.LocalRunner(jobs=2, gpus=["0", "1"], log_dir=str(tmp_path))
    results = runner.run_all([], tasks)
    assert set(results.values()) == {"ok"}
    printed = [(tmp_path / f"task_{i}.log").read_text().splitlines()[-1] for i in range(4)]
    assert {line.split()[0] for line in printed} == {"0", "1"}  # two workers, two GPUs
    assert all(line.split()[1] == "4" for line in printed)  # 8 cores / 2 workers


@pytest.mark.slow
def test_a_list_valued_option_makes_one_task_per_value_and_best_keeps_the_closest_to_retrain(tmp_path):
    grid = {
        "common": dict(SMALL_DIGITS),
        "masks": {"dense": {"options": {"epochs": 2, "decreasing_lr": "50", "pruning_times": 1}}},
        "models": {"dense": {"mask": "dense", "file": "0model_SA_best.pth.tar"}},
        "scenarios": {"class-wise": {"class_to_replace": 1}},
        "methods": {"retrain": {"unlearn_epochs": 1, "unlearn_lr": 0.1}, "GA": {"unlearn_epochs": 1, "unlearn_lr": [1e-5, 0.01]}},
        "seeds": [1],
    }
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    out = tmp_path / "out"
    result = run([SWEEP, tmp_path / "grid.json", "--out", out, "--jobs", "2"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 tasks" in result.stdout  # the mask, Retrain and GA twice
    for setting, lr in (("unlearn_lr_1e-05", "1e-05"), ("unlearn_lr_0.01", "0.01")):
        folder = out / "unlearn" / "dense" / "class-wise" / "GA" / setting / "seed1"
        labels = json.loads((folder / "task.json").read_text())["labels"]
        assert labels["setting"] == f"unlearn_lr={lr}"
        assert json.loads((folder / "GAeval_result.json").read_text())["args"]["unlearn_lr"] == float(lr)

    every = run([SUMMARIZE, out])
    assert every.returncode == 0, every.stderr
    rows = {line.split(" | ")[0][2:]: line for line in every.stdout.splitlines() if line.startswith("| GA")}
    assert set(rows) == {"GA (unlearn_lr=1e-05)", "GA (unlearn_lr=0.01)"}
    gaps = {name: float(line.split(" | ")[6]) for name, line in rows.items()}

    # The results alone, copied elsewhere with their task.json, keep their settings; --best keeps one.
    copied = tmp_path / "copied"
    for path in out.glob("unlearn/**/*"):
        if path.name in ("task.json", "GAeval_result.json", "retraineval_result.json"):
            target = copied / path.relative_to(out)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    chosen = run([SUMMARIZE, copied, "--best", "--overrides", tmp_path / "chosen.json"])
    assert chosen.returncode == 0, chosen.stderr
    kept = [line for line in chosen.stdout.splitlines() if line.startswith("| GA")]
    assert len(kept) == 1
    best = kept[0].split(" | ")[0][2:]
    assert gaps[best] == min(gaps.values())  # the closest to Retrain (either, should the two tie when rounded)
    lr = float(best.split("=")[1][:-1])
    assert json.loads((tmp_path / "chosen.json").read_text()) == [
        {"model": "dense", "scenario": "class-wise", "method": "GA", "options": {"unlearn_lr": lr}}
    ]  # ready to be a grid's "overrides"
    assert f"GA, dense, class-wise: selected {best.split('(')[1][:-1]} (Avg. Gap {gaps[best]:.2f}) over" in chosen.stdout


def test_an_override_changes_a_methods_options_for_one_model_and_scenario(tmp_path):
    grid = json.loads(tiny_grid(tmp_path / "grid.json").read_text())
    grid["overrides"] = [{"model": "50% sparse", "method": "GA", "options": {"unlearn_lr": 0.5}}]
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    result = run([SWEEP, tmp_path / "grid.json", "--out", tmp_path / "out", "--dry-run"])
    assert result.returncode == 0, result.stderr
    forget = [literal_options(shlex.split(line)[2:]) for line in result.stdout.splitlines() if "main_forget.py" in line]
    rates = {(o["--mask"].split("/")[-1], o["--unlearn"]): o["--unlearn_lr"] for o in forget}
    assert rates == {
        ("0model_SA_best.pth.tar", "GA"): "0.001", ("1model_SA_best.pth.tar", "GA"): "0.5",
        ("0model_SA_best.pth.tar", "FT"): "0.001", ("1model_SA_best.pth.tar", "FT"): "0.001",
    }  # fmt: skip
    grid["overrides"] = [{"model": "nosuch", "options": {}}]
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    bad = run([SWEEP, tmp_path / "grid.json", "--out", tmp_path / "out", "--dry-run"])
    assert bad.returncode == 2 and "overrides[0].model 'nosuch' is not one of the grid's models" in bad.stderr


def test_a_finished_task_run_with_other_options_is_named_and_kept(tmp_path):
    import arg_parser
    from workflow.sweep import expand, load_grid

    grid_file = tiny_grid(tmp_path / "grid.json", methods=("FT",), seeds=(1,))
    out = tmp_path / "out"
    masks, unlearnings = expand(load_grid(grid_file), str(out))
    # Finished results as the runs would leave them, one run with another learning rate.
    for task in masks + unlearnings:
        args = vars(arg_parser.parse_args(task["cmd"][2:]))
        for path in (task["result"], task.get("also")):
            if path:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    json.dump({"args": args}, f)
    stale = unlearnings[0]
    with open(stale["result"]) as f:
        saved = json.load(f)
    saved["args"]["unlearn_lr"] = 0.01
    with open(stale["result"], "w") as f:
        json.dump(saved, f)

    result = run([SWEEP, grid_file, "--out", out, "--dry-run"], timeout=120)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("# warning")]
    assert len(warnings) == 1, result.stdout
    assert stale["name"] in warnings[0] and "--unlearn_lr 0.01 (grid now: 0.001)" in warnings[0]
    assert f"Delete {os.path.dirname(stale['result'])}" in warnings[0]
    assert f"{len(masks) + len(unlearnings)} finished" in result.stdout  # kept, not rerun


def test_train_seeds_make_one_original_model_each_and_every_method_unlearns_from_each(tmp_path):
    grid = json.loads(tiny_grid(tmp_path / "grid.json", seeds=(1,)).read_text())
    grid["train_seeds"] = [3, 4]
    grid["methods"]["retrain"] = {"_models": ["50% sparse"], "_scenarios": ["class-wise"]}
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    result = run([SWEEP, tmp_path / "grid.json", "--out", tmp_path / "out", "--dry-run"])
    assert result.returncode == 0, result.stderr
    lines = [shlex.split(line) for line in result.stdout.splitlines() if line.startswith(sys.executable)]
    masks = [literal_options(words[2:]) for words in lines if words[1].endswith("main_imp.py")]
    assert {(o["--train_seed"], o["--save_dir"].split("/")[-1]) for o in masks} == {("3", "train_seed3"), ("4", "train_seed4")}
    forget = [literal_options(words[2:]) for words in lines if words[1].endswith("main_forget.py")]
    # GA and FT on both models, retrain on the sparse one only: (2 x 2 + 1) per original model.
    assert len(forget) == 10
    for o in forget:
        seed_folder = f"train_seed{o['--train_seed']}"
        assert f"/{seed_folder}/" in o["--mask"] and f"/{seed_folder}/" in o["--save_dir"]
    assert {o["--mask"].split("/")[-1] for o in forget if o["--unlearn"] == "retrain"} == {"1model_SA_best.pth.tar"}
    only = run([SWEEP, tmp_path / "grid.json", "--out", tmp_path / "out", "--masks-only", "--dry-run"])
    assert only.stdout.count("main_imp.py") == 2 and "main_forget.py" not in only.stdout
    grid["train_seeds"] = [3, "4"]
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    bad = run([SWEEP, tmp_path / "grid.json", "--out", tmp_path / "out", "--dry-run"])
    assert bad.returncode == 2 and "train_seeds must be a non-empty list of integers" in bad.stderr


@pytest.mark.slow
def test_a_study_over_independent_original_models_on_digits_is_summarised_with_paired_intervals(tmp_path):
    """train_seeds on real runs: results grouped by original model, the noise floor, the seed-insensitive
    method found, and the paired difference and p-value equal to scipy's on the same result files."""
    from scipy import stats as scipy_stats

    grid = json.loads(tiny_grid(tmp_path / "grid.json", methods=("FT",), seeds=(1, 2)).read_text())
    grid["train_seeds"] = [1, 2]
    grid["common"].update(train_per_class=20, test_per_class=10)  # 26 runs: a small share of digits keeps it short
    grid["methods"] = {
        "retrain": {"unlearn_epochs": 1, "unlearn_lr": 0.1},
        "FT": {"unlearn_epochs": 1, "unlearn_lr": 0.01},
        "wfisher": {"iu_damping": 20, "alpha": 1.0},
    }
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    out = tmp_path / "out"
    result = run([SWEEP, tmp_path / "grid.json", "--out", out, "--jobs", "2"], timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = run([SUMMARIZE, out])
    assert summary.returncode == 0, summary.stderr
    assert "### Across original models (2 independently trained dense / sparse pairs)" in summary.stdout

    def metrics(model, method, train_seed, seed):
        path = out / "unlearn" / model / f"train_seed{train_seed}" / "class-wise" / method / f"seed{seed}" / f"{method}eval_result.json"
        result = json.loads(path.read_text())
        assert result["args"]["train_seed"] == train_seed
        return [result[m] for m in ("UA", "MIA-Efficacy", "RA", "TA")]

    def gap(model, method, t):
        runs = [metrics(model, method, t, s) for s in (1, 2)]
        retrain = [metrics(model, "retrain", t, s) for s in (1, 2)]
        mean = [sum(v) / 2 for v in zip(*runs)]
        reference = [sum(v) / 2 for v in zip(*retrain)]
        return sum(abs(a - b) for a, b in zip(mean, reference)) / 4

    dense, sparse = [gap("dense", "FT", t) for t in (1, 2)], [gap("50_sparse", "FT", t) for t in (1, 2)]
    diffs = [b - a for a, b in zip(dense, sparse)]
    line = next(row for row in summary.stdout.splitlines() if row.startswith("| FT: 50% sparse − dense"))  # the comparison table
    assert f"{sum(diffs) / 2:+.2f} (n=2)" in line
    assert f"| {scipy_stats.ttest_rel(sparse, dense).pvalue:.3f} |" in line
    floor = [sum(abs(a - b) for a, b in zip(metrics("dense", "retrain", t, 1), metrics("dense", "retrain", t, 2))) / 4 for t in (1, 2)]
    floor_row = next(row for row in summary.stdout.splitlines() if row.startswith("| Retrain vs Retrain (noise floor)"))
    assert floor_row.split(" | ")[1].startswith(f"{sum(floor) / 2:.2f}")
    across = summary.stdout[summary.stdout.index("### Across original models") :]
    iu = next(row for row in across.splitlines() if row.startswith("| IU |"))
    assert "\\*" in iu  # IU does not depend on the unlearning seed under class-wise forgetting


# ---------------------------------------------------------------- tasks of several processes (torchrun)


def test_a_task_of_several_processes_gets_that_many_gpus_and_threads_shared(tmp_path, monkeypatch):
    from workflow import sweep

    monkeypatch.setattr(sweep.os, "cpu_count", lambda: 8)
    show = "import os, time; time.sleep(0.5); print(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['OMP_NUM_THREADS'])"
    tasks = [{"name": f"task {i}", "cmd": [sys.executable, "-c", show], "after": None} for i in range(2)]
    runner = sweep.LocalRunner(jobs=2, gpus=["0", "1", "2", "3"], log_dir=str(tmp_path))
    monkeypatch.setattr(sweep, "launch_command", lambda task, slurm=False: task["cmd"])  # what the runner gives, not torchrun
    for task in tasks:
        task["processes"] = 2
    assert set(runner.run_all([], tasks).values()) == {"ok"}
    printed = sorted((tmp_path / f"task_{i}.log").read_text().splitlines()[-1] for i in range(2))
    assert printed == ["0,1 2", "2,3 2"]  # two GPUs each, 8 cores / (2 tasks x 2 processes)


@pytest.mark.slow
def test_processes_per_task_runs_each_task_under_torchrun(tmp_path):
    grid = json.load(open(tiny_grid(tmp_path / "grid.json", methods=("raw",), seeds=(1,))))
    grid["masks"]["omp"]["options"].update(epochs=1, pruning_times=1)
    grid["models"] = {"dense": {"mask": "omp", "file": "0model_SA_best.pth.tar"}}
    grid["processes_per_task"] = 2
    with open(tmp_path / "grid.json", "w") as f:
        json.dump(grid, f)
    dry = run([SWEEP, tmp_path / "grid.json", "--out", tmp_path / "out", "--dry-run"])
    assert dry.returncode == 0, dry.stderr
    launches = [line for line in dry.stdout.splitlines() if "main_" in line]
    assert len(launches) == 2 and all("torch.distributed.run --standalone --nproc_per_node=2" in line for line in launches)

    ran = run([SWEEP, tmp_path / "grid.json", "--out", tmp_path / "out", "--gpus", ""], env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    with open(next((tmp_path / "out" / "unlearn").rglob("raweval_result.json"))) as f:
        assert json.load(f)["method"] == "raw"


def test_several_nodes_per_task_go_to_slurm_with_a_rendezvous(tmp_path):
    grid = json.load(open(tiny_grid(tmp_path / "grid.json")))
    grid.update(processes_per_task=8, nodes_per_task=2)
    with open(tmp_path / "grid.json", "w") as f:
        json.dump(grid, f)
    dry = run([SWEEP, tmp_path / "grid.json", "--out", tmp_path / "out", "--backend", "slurm", "--dry-run", "--sbatch", "--gres gpu:8"])
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("#SBATCH --nodes=2") == 2 and "#SBATCH --ntasks-per-node=1" in dry.stdout
    launch = next(line for line in dry.stdout.splitlines() if "main_imp.py" in line and line.startswith("srun"))
    assert "--nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d" in launch and "--rdzv_endpoint=" in launch and "SLURM_JOB_NODELIST" in launch
    assert launch.startswith("srun ${SLURM_CPUS_PER_TASK:+--cpus-per-task=$SLURM_CPUS_PER_TASK} ")  # not inherited since Slurm 22.05

    local = run([SWEEP, tmp_path / "grid.json", "--out", tmp_path / "local"])
    assert local.returncode == 2 and "run it with --backend slurm" in local.stderr and len(local.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "local").exists()
