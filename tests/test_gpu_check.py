"""bench/gpu_check.sh --cpu-dry-run: the prepared GPU check runs its every step on the CPU, so it does not rot."""

import json
import subprocess

import pytest

import unlearn
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # the whole check, tiny: about 5 minutes on 2 cores


def test_the_gpu_check_runs_every_step_and_every_registered_method_on_the_cpu(tmp_path):
    out = tmp_path / "check"
    done = subprocess.run(["bash", "bench/gpu_check.sh", "--cpu-dry-run", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    summary = (out / "summary.tsv").read_text()
    assert done.returncode == 0, summary + done.stdout[-2000:]
    steps = dict(line.split("\t")[:2] for line in summary.strip().splitlines()[1:])
    expected = {"environment", "prune", "prune_amp_channels_last", "methods", "resume", "train_speed", "iu_memory", "ff"}
    assert expected | {"imagenet", "two_ranks"} == set(steps) and set(steps.values()) == {"ok"}
    rows = json.loads((out / "methods" / "methods.json").read_text())
    assert [(r["method"], r["variant"]) for r in rows] == [(m, v) for m in unlearn.METHODS for v in ("plain", "channels_last")]
    assert all(r["status"] == "ok" and r["device"] == "cpu" for r in rows)
    figures = (out / "figures.txt").read_text()
    assert "killed and resumed vs uninterrupted: 1model_SA_best.pth.tar: bit-identical" in figures
    assert all(f"{method} " in figures for method in unlearn.METHODS)  # named in the output
    assert "iu_memory streamed: peak at batch 32 / at 8" in figures


def test_the_gpu_check_without_a_folder_says_how_to_call_it():
    done = subprocess.run(["bash", "bench/gpu_check.sh"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("usage: bash bench/gpu_check.sh")
