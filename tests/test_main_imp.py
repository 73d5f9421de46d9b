import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import arg_parser
import pruner
from checkpoints import load_checkpoint, state_dict_of
from dataset import TensorLoader
from models import create_model
from paths import best_checkpoint_path, checkpoint_path, rewind_weight_path
from pruning_run import ImpRun
from tests.conftest import ROOT, run_script

pytestmark = pytest.mark.slow  # trains through main_imp.py in subprocesses

DIGITS_FAST = ["--dataset", "digits", "--arch", "resnet20s", "--batch_size", "128", "--decreasing_lr", "50"]


def test_imp_states_reach_20_36_48_8_percent_with_nested_masks(tmp_path):
    result = run_script(
        "main_imp.py", *DIGITS_FAST, "--epochs", "1", "--rate", "0.2", "--pruning_times", "4", "--prune_type", "lt", "--save_dir", tmp_path
    )
    assert result.returncode == 0, result.stderr
    previous = None
    for state, expected in enumerate([0.0, 20.0, 36.0, 48.8]):
        sd = state_dict_of(load_checkpoint(checkpoint_path(tmp_path, state)))
        mask = pruner.extract_mask(sd)
        assert (pruner.sparsity(mask) if mask else 0.0) == pytest.approx(expected, abs=0.1)
        if previous:
            assert all(bool((mask[k] <= previous[k]).all()) for k in mask), f"state {state} revived a pruned weight"
        previous = mask
    assert "state 3: conv sparsity 48.80%" in result.stdout


def small_run(tmp_path, digits, *options):
    """An ImpRun on 256 digits images: enough to check what rewinding does."""
    args = arg_parser.parse_args([*DIGITS_FAST, "--save_dir", str(tmp_path), "--pruning_times", "2", "--rate", "0.5", *options])
    torch.manual_seed(args.train_seed)
    model = create_model(args.arch, 10, digits.mean, digits.std)
    train = TensorLoader(digits.train, range(256), batch_size=64, shuffle=True, augment=digits.augment, seed=1)
    val = TensorLoader(digits.val, batch_size=128)
    return ImpRun(args, model, (train, val, val), torch.device("cpu"))


def assert_rewound_to(model, reference, mask):
    dense = pruner.dense_state_dict(model.state_dict())
    for key, value in pruner.dense_state_dict(reference).items():
        expected = value * mask[key + "_mask"] if key + "_mask" in mask else value
        assert torch.equal(dense[key], expected), key


@pytest.mark.parametrize("prune_type", ["lt", "rewind_lt", "pt"])
def test_surviving_weights_are_rewound(tmp_path, digits, prune_type):
    run = small_run(tmp_path, digits, "--epochs", "3", "--rewind_epoch", "2", "--prune_type", prune_type)
    initial = {k: v.clone() for k, v in run.model.state_dict().items()}
    run.train_state()
    with torch.no_grad():  # the weights now differ from every saved epoch's, whichever epoch was best
        for p in run.model.parameters():
            p.add_(0.01)
    final = {k: v.clone() for k, v in run.model.state_dict().items()}
    run.prune_and_rewind()
    mask = pruner.current_mask(run.model)
    assert pruner.sparsity(mask) == pytest.approx(50.0, abs=0.1)
    if prune_type == "lt":
        reference = initial
    elif prune_type == "rewind_lt":
        reference = torch.load(rewind_weight_path(tmp_path, 2), weights_only=True)
        assert run.scheduler.last_epoch == 2  # learning-rate rewinding
    else:
        reference = state_dict_of(load_checkpoint(best_checkpoint_path(tmp_path, 0)))
    assert not torch.equal(reference["conv1.weight"], final["conv1.weight"])
    assert_rewound_to(run.model, reference, mask)
    assert run.state == 1 and run.epoch == 0


def test_rewind_epoch_zero_is_refused_before_any_work(tmp_path):
    result = run_script("main_imp.py", *DIGITS_FAST, "--rewind_epoch", "0", "--pruning_times", "2", "--save_dir", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: --prune_type rewind_lt --rewind_epoch 0")
    assert not (tmp_path / "out").exists()


def test_sigterm_stops_with_a_checkpoint_that_resumes(tmp_path):
    options = [*DIGITS_FAST, "--epochs", "4", "--pruning_times", "1", "--checkpoint_every_s", "0"]
    cmd = [sys.executable, os.path.join(ROOT, "main_imp.py"), *options, "--save_dir", str(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not os.path.exists(checkpoint_path(tmp_path, 0)) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    saved = load_checkpoint(checkpoint_path(tmp_path, 0))
    assert 1 <= saved["epoch"] < 4
    resumed = run_script("main_imp.py", *options, "--save_dir", tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"state 0, {saved['epoch']} epochs done" in resumed.stderr
    assert load_checkpoint(checkpoint_path(tmp_path, 0))["epoch"] == 4
