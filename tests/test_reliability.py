"""A checkpoint cannot run code; a diverging method writes no NaN; a run killed at any
moment resumes to the same end as the same command run through (so runs are deterministic);
finished results are never overwritten."""

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from checkpoints import CheckpointSchedule, load_checkpoint
from paths import best_checkpoint_path, checkpoint_path
from tests.conftest import ROOT, SMALL_DIGITS, run_script

pytestmark = pytest.mark.slow  # kills and resumes real runs

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


def test_diverging_gradient_ascent_stops_clearly_and_writes_no_nan(small_digits_masks, tmp_path):
    options = [*DIGITS, *SMALL_DIGITS, "--mask", small_digits_masks["dense"], "--unlearn", "GA", "--unlearn_lr", "1e6"]
    result = run_script("main_forget.py", *options, "--save_dir", tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "GA with --unlearn_lr 1e+06 made the weights non-finite" in result.stderr.strip().splitlines()[-1]
    for path in tmp_path.iterdir():
        if path.suffix == ".tar":
            saved = load_checkpoint(path)
            assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())
        if path.suffix == ".json":
            assert "nan" not in path.read_text().lower()
    assert not (tmp_path / "GAeval_result.json").exists()


def kill_at_random_moments(script, options, save_dir, seed, checkpoints, kills=3, max_delay=3.0):
    """Start the run, SIGKILL it at a random moment, restart with --resume; `kills` times, then finish.

    Each kill comes a random 0..max_delay seconds after the run (re)wrote one of its
    `checkpoints` (a glob), so that every restart makes progress and the kill lands in
    training, in a checkpoint write or in the evaluation. Returns the final run and the kills.
    """
    rng = random.Random(seed)
    killed = 0
    for k in range(kills):
        start = time.time()
        cmd = [sys.executable, os.path.join(ROOT, script), *map(str, options), "--save_dir", str(save_dir), *(["--resume"] if k else [])]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and time.time() < start + 300:
            if any(p.stat().st_mtime >= start for p in save_dir.glob(checkpoints)):
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0, max_delay))
        if proc.poll() is None:
            proc.kill()
            killed += 1
        proc.wait()
    return run_script(script, *options, "--save_dir", save_dir, "--resume"), killed


def test_a_resume_checkpoint_is_due_once_its_interval_has_passed_or_when_it_must_be_kept():
    now = [100.0]
    schedule = CheckpointSchedule(60, clock=lambda: now[0])
    now[0] = 159.0
    assert not schedule.due() and schedule.due(keep=True)
    now[0] = 160.0
    assert schedule.due()
    schedule.written()
    now[0] = 219.0
    assert not schedule.due()
    every_epoch = CheckpointSchedule(0, clock=lambda: now[0])
    assert every_epoch.due()


def test_main_imp_killed_at_random_moments_ends_bit_identical(tmp_path):
    options = [*DIGITS, "--batch_size", "128", "--decreasing_lr", "2", "--epochs", "3", "--rewind_epoch", "1", "--rate", "0.9"]
    options += ["--train_per_class", "60", "--test_per_class", "20"]  # 2.4 s epochs on one core: the kills land in the run
    # A checkpoint written only once 1.5 s have passed: some kills fall after epochs it did not write.
    options += ["--pruning_times", "2", "--checkpoint_every_s", "1.5"]
    whole = run_script("main_imp.py", *options, "--save_dir", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    resumed, killed = kill_at_random_moments("main_imp.py", options, tmp_path / "killed", 7, "[0-9]checkpoint.pth.tar")
    assert resumed.returncode == 0, resumed.stderr
    assert killed >= 2, "the runs ended before they could be killed"
    for state in (0, 1):
        end_whole = load_checkpoint(checkpoint_path(tmp_path / "whole", state))
        end_killed = load_checkpoint(checkpoint_path(tmp_path / "killed", state))
        assert end_killed["epoch"] == 3
        for key, value in end_whole["state_dict"].items():
            assert torch.equal(value, end_killed["state_dict"][key]), (state, key)
        assert end_whole["best_sa"] == end_killed["best_sa"]
        best_whole = load_checkpoint(best_checkpoint_path(tmp_path / "whole", state))
        best_killed = load_checkpoint(best_checkpoint_path(tmp_path / "killed", state))
        assert best_whole["epoch"] == best_killed["epoch"]
        assert all(torch.equal(value, best_killed["state_dict"][key]) for key, value in best_whole["state_dict"].items())


def comparable_result(save_dir, method):
    with open(save_dir / f"{method}eval_result.json") as f:
        res = json.load(f)
    for timing in ("unlearn_seconds", "RTE"):
        res.pop(timing)
    res["args"].pop("save_dir")
    res["args"].pop("resume")
    return res


def test_main_forget_ft_killed_at_random_moments_ends_bit_identical(small_digits_masks, tmp_path):
    """Also the same command twice: the uninterrupted run and the first killed one draw their random forget sets apart."""
    options = [*DIGITS, *SMALL_DIGITS, "--mask", small_digits_masks["sparse"], "--unlearn", "FT", "--unlearn_epochs", "10"]
    options += ["--unlearn_lr", "0.01", "--class_to_replace", "-1", "--num_indexes_to_replace", "30", "--checkpoint_every_s", "0"]
    whole = run_script("main_forget.py", *options, "--save_dir", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    resumed, killed = kill_at_random_moments("main_forget.py", options, tmp_path / "killed", 3, "FTcheckpoint.pth.tar")
    assert resumed.returncode == 0, resumed.stderr
    assert killed >= 2, "the runs ended before they could be killed"
    sd_whole = load_checkpoint(tmp_path / "whole" / "FTcheckpoint.pth.tar")["state_dict"]
    sd_killed = load_checkpoint(tmp_path / "killed" / "FTcheckpoint.pth.tar")["state_dict"]
    assert all(torch.equal(sd_whole[k], sd_killed[k]) for k in sd_whole)
    assert comparable_result(tmp_path / "whole", "FT") == comparable_result(tmp_path / "killed", "FT")
    assert (tmp_path / "whole" / "forget_indexes.npy").read_bytes() == (tmp_path / "killed" / "forget_indexes.npy").read_bytes()


def test_main_forget_resumes_an_interrupted_unlearning_after_its_last_epoch(digits_masks, tmp_path):
    """SIGTERM between epochs: exit 143, and --resume continues after the saved epoch (not from scratch)."""
    options = [*DIGITS, "--mask", digits_masks["dense"], "--unlearn", "GA", "--unlearn_epochs", "20", "--unlearn_lr", "1e-5"]
    options += ["--checkpoint_every_s", "0"]
    cmd = [sys.executable, os.path.join(ROOT, "main_forget.py"), *map(str, options), "--save_dir", str(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "GAcheckpoint.pth.tar"
    deadline = time.time() + 300
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    done = load_checkpoint(checkpoint)["progress"]["epoch"]
    assert 1 <= done < 20
    resumed = run_script("main_forget.py", *options, "--save_dir", tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"GA continues after epoch {done}/20" in resumed.stderr
    assert f"GA epoch {done}/20" not in resumed.stderr and "GA epoch 20/20" in resumed.stderr
    assert "progress" not in load_checkpoint(checkpoint)


def test_a_new_run_moves_finished_results_aside(small_digits_masks, tmp_path):
    options = [*DIGITS, *SMALL_DIGITS, "--mask", small_digits_masks["dense"]]
    options += ["--unlearn", "GA", "--unlearn_epochs", "1", "--unlearn_lr", "1e-4"]
    first = run_script("main_forget.py", *options, "--save_dir", tmp_path)
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "GAeval_result.json").read_bytes()
    second = run_script("main_forget.py", *options, "--save_dir", tmp_path)
    assert second.returncode == 0, second.stderr
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("previous-")]
    assert len(aside) == 1 and f"moved them to {aside[0]}" in second.stderr
    assert (aside[0] / "GAeval_result.json").read_bytes() == before
    assert {p.name for p in aside[0].iterdir()} == {"GAcheckpoint.pth.tar", "GAeval_result.pth.tar", "GAeval_result.json"}
    assert (tmp_path / "GAeval_result.json").exists()


LATER = {  # settings under which each epoch takes about a second on digits
    "SalUn": ["--unlearn_epochs", "4", "--unlearn_lr", "0.01"],
    "boundary_expanding": ["--unlearn_epochs", "6", "--unlearn_lr", "0.001"],
}


@pytest.mark.parametrize("method", list(LATER))
def test_salun_and_boundary_expanding_killed_once_end_bit_identical(method, digits_masks, tmp_path):
    """A saliency mask and an extra class survive a SIGKILL (the other later methods: tests/test_unlearn_later_methods.py)."""
    options = [*DIGITS, "--mask", digits_masks["sparse"], "--unlearn", method, *LATER[method]]
    options += ["--class_to_replace", "-1", "--num_indexes_to_replace", "300", "--checkpoint_every_s", "0"]
    cmd = [sys.executable, os.path.join(ROOT, "main_forget.py"), *map(str, options), "--save_dir", str(tmp_path / "whole")]
    whole = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # alongside the killed one
    resumed, killed = kill_at_random_moments("main_forget.py", options, tmp_path / "killed", 5, f"{method}checkpoint.pth.tar", 1, 0.5)
    _, stderr = whole.communicate(timeout=600)
    assert whole.returncode == 0, stderr
    assert resumed.returncode == 0, resumed.stderr
    assert killed == 1 and f"{method} continues after epoch" in resumed.stderr, resumed.stderr
    sd_whole = load_checkpoint(tmp_path / "whole" / f"{method}checkpoint.pth.tar")["state_dict"]
    sd_killed = load_checkpoint(tmp_path / "killed" / f"{method}checkpoint.pth.tar")["state_dict"]
    assert sd_whole.keys() == sd_killed.keys() and all(torch.equal(sd_whole[k], sd_killed[k]) for k in sd_whole)


def test_results_are_written_with_the_users_permissions_not_privately(tmp_path):
    from checkpoints import UMASK, atomic_save_json

    path = tmp_path / "result.json"
    atomic_save_json({"UA": 1.0}, path)
    assert (path.stat().st_mode & 0o777) == 0o666 & ~UMASK
    assert not [p for p in tmp_path.iterdir() if p.name != "result.json"]  # no temporary file left
