"""A checkpoint cannot run code; a diverging method writes no NaN; runs are deterministic."""

import json
import pickle

import pytest
import torch

from tests.conftest import run_script
from utils import load_checkpoint

DIGITS = ["--dataset", "digits", "--arch", "resnet20s", "--batch_size", "64"]


class Payload:
    """Unpickling this creates a file: what a malicious checkpoint would do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def malicious_checkpoint(tmp_path):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.pth.tar"
    torch.save(
        {"state_dict": {"conv1.weight": torch.zeros(1)}, "extra": Payload(str(marker))}, path, pickle_protocol=pickle.HIGHEST_PROTOCOL
    )
    assert not marker.exists()
    return path, marker


@pytest.mark.parametrize(
    "script,options",
    [
        ("main_forget.py", ["--unlearn", "FT", "--mask"]),
        ("main_backdoor.py", ["--unlearn", "FT", "--num_indexes_to_replace", "10", "--mask"]),
        ("main_imp.py", ["--resume", "--checkpoint"]),
        ("main_synflow.py", ["--resume", "--checkpoint"]),
    ],
)
def test_a_checkpoint_with_a_pickled_payload_is_refused(script, options, malicious_checkpoint, tmp_path):
    path, marker = malicious_checkpoint
    result = run_script(script, *DIGITS, *options, path, "--save_dir", tmp_path / "out")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: refusing to load {path}") and "could run code" in last
    assert not marker.exists()


def test_diverging_gradient_ascent_stops_clearly_and_writes_no_nan(digits_masks, tmp_path):
    result = run_script(
        "main_forget.py", *DIGITS, "--mask", digits_masks["dense"], "--unlearn", "GA", "--unlearn_lr", "1e6", "--save_dir", tmp_path
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "GA with --unlearn_lr 1e+06 made the weights non-finite" in result.stderr.strip().splitlines()[-1]
    for path in tmp_path.iterdir():
        if path.suffix == ".tar":
            saved = load_checkpoint(path)
            assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())
        assert "nan" not in path.read_bytes().decode("latin-1").lower() or path.suffix == ".npy"
    assert not (tmp_path / "GAeval_result.json").exists()


def test_two_identical_runs_give_identical_results(digits_masks, tmp_path):
    results = []
    for run in ("a", "b"):
        out = tmp_path / run
        result = run_script(
            "main_forget.py", *DIGITS, "--mask", digits_masks["sparse"], "--unlearn", "FT", "--unlearn_epochs", "1",
            "--unlearn_lr", "0.01", "--class_to_replace", "-1", "--num_indexes_to_replace", "50", "--save_dir", out,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        with open(out / "FTeval_result.json") as f:
            res = json.load(f)
        for timing in ("unlearn_seconds", "RTE"):
            res.pop(timing)
        res["args"].pop("save_dir")
        results.append((res, load_checkpoint(out / "FTcheckpoint.pth.tar")["state_dict"], (out / "forget_indexes.npy").read_bytes()))
    (res_a, sd_a, idx_a), (res_b, sd_b, idx_b) = results
    assert res_a == res_b and idx_a == idx_b
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
