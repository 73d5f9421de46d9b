import json

import pytest
import torch

import pruner
from checkpoints import load_checkpoint, state_dict_of
from models import create_model
from tests.conftest import SMALL_DIGITS, run_script
from utils import setup_seed

pytestmark = pytest.mark.slow  # trains trojaned models through main_backdoor.py

DIGITS = ["--dataset", "digits", "--arch", "resnet20s", "--batch_size", "64"]


def test_trojan_is_planted_and_retrain_removes_it(tmp_path):
    """On 60 training images per class, 60 of them poisoned (measured: success rate 98% -> 0%, clean accuracy 95%)."""
    result = run_script(
        "main_backdoor.py", *DIGITS, "--epochs", "8", "--decreasing_lr", "5,7", "--num_indexes_to_replace", "60", "--rate", "0",
        "--mask", tmp_path / "trojan.pth.tar", "--unlearn", "retrain", "--unlearn_epochs", "8", "--unlearn_lr", "0.1",
        "--train_per_class", "60", "--test_per_class", "20", "--save_dir", tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "retraineval_result.json") as f:
        res = json.load(f)
    # Relations, not one machine's numbers: the trigger works far above chance (10%) on the
    # trojaned model, retraining without the poisoned images takes most of that away, and
    # both models still classify clean digits far above chance.
    assert res["attack_success_rate"] >= 50, res
    assert res["attack_success_rate"] - res["attack_success_rate_unlearn"] >= 40, res
    assert min(res["test_acc"], res["test_acc_unlearn"]) > 30 and abs(res["test_acc"] - res["test_acc_unlearn"]) < 15, res
    saved = torch.load(tmp_path / "retraineval_result.pth.tar", weights_only=True)
    keys = ("test_acc", "attack_acc", "attack_success_rate")
    assert {*keys, *(f"{k}_unlearn" for k in keys)} <= set(saved)
    for suffix in ("", "_unlearn"):
        assert_attack_accuracy_counts_the_target_class_too(res["attack_acc" + suffix], res["attack_success_rate" + suffix], 200, 20)


def assert_attack_accuracy_counts_the_target_class_too(attack_acc, success_rate, n_test, n_target):
    """attack_acc is over all n_test test images (the original's), the success rate over the n_test - n_target of other classes."""
    hits_target = attack_acc * n_test / 100 - success_rate * (n_test - n_target) / 100
    assert hits_target == pytest.approx(round(hits_target), abs=1e-3) and 0 <= round(hits_target) <= n_target


def test_the_papers_trojan_command_on_its_defaults(tmp_path):
    """--rate 0.95, --rewind_epoch 0 (rewind to the initialisation) and --unlearn_lr 0.01, as in the original."""
    mask = tmp_path / "trojan.pth.tar"
    result = run_script(
        "main_backdoor.py", "--dataset", "digits", "--arch", "resnet20s", "--epochs", "2", "--unlearn_epochs", "2",
        "--save_dir", tmp_path, "--mask", mask, "--unlearn", "FT", "--num_indexes_to_replace", "130", *SMALL_DIGITS,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    trojaned = state_dict_of(load_checkpoint(mask))
    assert pruner.sparsity(pruner.extract_mask(trojaned)) == pytest.approx(95.0, abs=0.01)
    retraining = load_checkpoint(tmp_path / "1checkpoint.pth.tar")  # the retraining after pruning
    setup_seed(2)  # --train_seed is --seed (2) when left out
    initialisation = create_model("resnet20s", 10, [0.5] * 3, [0.5] * 3).state_dict()
    rewound_to = retraining["init_weight"]  # what the surviving weights were rewound to
    assert all(torch.equal(rewound_to[k], v) for k, v in initialisation.items() if not k.startswith("normalize"))
    # the trojaned model is the retraining's last epoch, as the original's OMP
    assert all(torch.equal(trojaned[k], v) for k, v in retraining["state_dict"].items())
    assert "FT epoch 1/2 lr 0.01 " in result.stderr


def test_loading_a_mask_keeps_every_conv_weight(small_digits_masks, tmp_path):
    digits_masks = small_digits_masks
    result = run_script(
        "main_backdoor.py", *DIGITS, *SMALL_DIGITS, "--num_indexes_to_replace", "50", "--mask", digits_masks["sparse"],
        "--unlearn", "FT", "--unlearn_epochs", "0", "--save_dir", tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    original = pruner.dense_state_dict(state_dict_of(load_checkpoint(digits_masks["sparse"])))
    loaded = pruner.dense_state_dict(state_dict_of(load_checkpoint(tmp_path / "FTcheckpoint.pth.tar")))
    for key, value in original.items():
        assert torch.equal(loaded[key], value), key


def test_resume_skips_what_is_done(small_digits_masks, tmp_path):
    args = [*DIGITS, *SMALL_DIGITS, "--num_indexes_to_replace", "50", "--mask", small_digits_masks["sparse"]]
    args += ["--unlearn", "GA", "--unlearn_epochs", "1"]
    first = run_script("main_backdoor.py", *args, "--unlearn_lr", "0.0001", "--save_dir", tmp_path)
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "GAeval_result.json").read_bytes()
    again = run_script("main_backdoor.py", *args, "--unlearn_lr", "0.0001", "--save_dir", tmp_path, "--resume")
    assert again.returncode == 0, again.stderr
    assert "skipping unlearning" in again.stderr and "GA epoch" not in again.stderr
    assert (tmp_path / "GAeval_result.json").read_bytes() == before
