"""scripts/ulira.py end to end on digits, CI-sized: shadow models, their unlearning, the attack."""

import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ULIRA = os.path.join(ROOT, "scripts", "ulira.py")


def test_shadow_models_train_on_their_halves_forget_their_targets_and_are_attacked(tmp_path):
    # Mechanics only. Whether the attack separates `raw` from Retrain on digits is not asserted:
    # with 6 shadow models of 15 epochs it measured 0.53 for both (no membership signal to find).
    grid = {
        "common": {"dataset": "digits", "arch": "resnet20s", "batch_size": 64},
        "masks": {"omp": {"options": {"epochs": 2, "decreasing_lr": "50", "pruning_times": 1}}},
        "models": {"dense": {"mask": "omp", "file": "0model_SA_best.pth.tar"}},
        "methods": {"raw": {}, "retrain": {"unlearn_epochs": 2, "unlearn_lr": 0.1}},
    }
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    out = tmp_path / "run"
    cmd = [sys.executable, ULIRA, tmp_path / "grid.json", "--out", out, "--models", "6", "--jobs", "2"]
    result = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, cwd=ROOT, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # Every shadow model trained on its own half and forgot exactly the targets in it.
    halves = [np.loadtxt(out / "plan" / f"half_{k}.txt", dtype=int) for k in range(6)]
    assert len({tuple(h) for h in halves}) == 6 and all(len(h) == 649 for h in halves)
    for k in range(6):
        saved = json.loads((out / "unlearn" / f"dense_{k}" / "shadow" / "retrain" / "seed1" / "retraineval_result.json").read_text())
        forgotten = np.loadtxt(out / "plan" / f"forget_{k}.txt", dtype=int)
        assert saved["forget_set_size"] == len(forgotten) and saved["args"]["train_positions"].endswith(f"half_{k}.txt")

    raw = json.loads((out / "ulira" / "dense" / "raw.json").read_text())
    retrain = json.loads((out / "ulira" / "dense" / "retrain.json").read_text())
    for report in (raw, retrain):
        assert report["reference_models"] == report["target_models"] == 6
        assert 0 <= report["balanced_accuracy"] <= 1 and report["forgotten_scored"] > 0 and report["unseen_scored"] > 0
    assert "raw dense: U-LiRA balanced accuracy" in result.stdout
