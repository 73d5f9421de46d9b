import json

import torch

import pruner
from tests.conftest import run_script
from utils import load_checkpoint, state_dict_of

DIGITS = ["--dataset", "digits", "--arch", "resnet20s", "--batch_size", "64"]


def test_trojan_is_planted_and_retrain_removes_it(tmp_path):
    result = run_script(
        "main_backdoor.py", *DIGITS, "--epochs", "8", "--decreasing_lr", "5,7", "--num_indexes_to_replace", "130", "--rate", "0",
        "--mask", tmp_path / "trojan.pth.tar", "--unlearn", "retrain", "--unlearn_epochs", "8", "--unlearn_lr", "0.1",
        "--save_dir", tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "retraineval_result.json") as f:
        res = json.load(f)
    assert res["attack_acc"] >= 90 and res["test_acc"] >= 85, res
    assert res["attack_acc_unlearn"] < 15 and res["test_acc_unlearn"] >= 85, res
    saved = torch.load(tmp_path / "retraineval_result.pth.tar", weights_only=True)
    assert {"test_acc", "attack_acc", "test_acc_unlearn", "attack_acc_unlearn"} <= set(saved)


def test_loading_a_mask_keeps_every_conv_weight(digits_masks, tmp_path):
    result = run_script(
        "main_backdoor.py", *DIGITS, "--num_indexes_to_replace", "50", "--mask", digits_masks["sparse"],
        "--unlearn", "FT", "--unlearn_epochs", "0", "--save_dir", tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    original = pruner.dense_state_dict(state_dict_of(load_checkpoint(digits_masks["sparse"])))
    loaded = pruner.dense_state_dict(state_dict_of(load_checkpoint(tmp_path / "FTcheckpoint.pth.tar")))
    for key, value in original.items():
        assert torch.equal(loaded[key], value), key


def test_resume_skips_what_is_done(digits_masks, tmp_path):
    args = [*DIGITS, "--num_indexes_to_replace", "50", "--mask", digits_masks["sparse"], "--unlearn", "GA", "--unlearn_epochs", "1"]
    first = run_script("main_backdoor.py", *args, "--unlearn_lr", "0.0001", "--save_dir", tmp_path)
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "GAeval_result.json").read_bytes()
    again = run_script("main_backdoor.py", *args, "--unlearn_lr", "0.0001", "--save_dir", tmp_path, "--resume")
    assert again.returncode == 0, again.stderr
    assert "skipping unlearning" in again.stderr and "GA epoch" not in again.stderr
    assert (tmp_path / "GAeval_result.json").read_bytes() == before
