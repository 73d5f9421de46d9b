import json
import math
import os

import pytest
import torch

import pruner
from checkpoints import load_checkpoint, state_dict_of
from tests.conftest import SMALL_DIGITS, run_script
from unlearn import UNLEARN_METHODS

pytestmark = pytest.mark.slow  # trains and unlearns through the scripts

# On a small share of digits (SMALL_DIGITS): what is written and kept does not depend on the numbers.
DIGITS = ["--dataset", "digits", "--arch", "resnet20s", "--batch_size", "64", *SMALL_DIGITS]
FAST = {
    "retrain": ["--unlearn_epochs", "1", "--unlearn_lr", "0.1"],
    "retrain_pipeline": ["--epochs", "1", "--decreasing_lr", "50", "--pruning_times", "2", "--rate", "0.95", "--prune_type", "lt"],
    "FT": ["--unlearn_epochs", "1", "--unlearn_lr", "0.01"],
    "GA": ["--unlearn_epochs", "1", "--unlearn_lr", "0.0001"],
    "fisher_new": [],
    "wfisher": ["--iu_damping", "100"],
    "FT_prune": ["--unlearn_epochs", "1", "--unlearn_lr", "0.01"],
    "raw": [],
    "FT_l1": ["--unlearn_epochs", "1", "--unlearn_lr", "0.01"],
    "GA_l1": ["--unlearn_epochs", "1", "--unlearn_lr", "0.0001"],
    "fisher": [],
    "FT_prune_bi": ["--unlearn_epochs", "2", "--unlearn_lr", "0.01", "--rate", "0.5"],
    "retrain_ls": ["--unlearn_epochs", "1", "--unlearn_lr", "0.1"],
    "retrain_sam": ["--unlearn_epochs", "1", "--unlearn_lr", "0.1"],
    "RL": ["--unlearn_epochs", "1", "--unlearn_lr", "0.01"],
    "SalUn": ["--unlearn_epochs", "1", "--unlearn_lr", "0.01"],
    "SCRUB": ["--unlearn_epochs", "1"],
    "boundary_shrink": ["--unlearn_epochs", "1", "--unlearn_lr", "0.001"],
    "boundary_expanding": ["--unlearn_epochs", "1", "--unlearn_lr", "0.001"],
    "NegGrad_plus": ["--unlearn_epochs", "1"],
}
RESULT_KEYS = {
    "UA", "RA", "TA", "MIA-Efficacy", "RTE", "accuracy", "SVC_MIA_forget_efficacy", "SVC_MIA_training_privacy",
    "sparsity", "forget_set_size", "args", "versions", "unlearn_seconds", "weights",
}  # fmt: skip


def forget(method, mask, save_dir, *extra):
    return run_script("main_forget.py", *DIGITS, "--save_dir", save_dir, "--mask", mask, "--unlearn", method, *FAST[method], *extra)


# Every method from the sparse model (the mask must survive); four from the dense one (CI time).
DENSE = ("retrain", "GA", "FT_prune_bi", "SalUn")


@pytest.mark.parametrize("method,kind", [(m, "sparse") for m in UNLEARN_METHODS] + [(m, "dense") for m in DENSE])
def test_every_method_writes_its_results_and_keeps_the_mask(method, kind, small_digits_masks, tmp_path):
    digits_masks = small_digits_masks
    result = forget(method, digits_masks[kind], tmp_path, "--num_indexes_to_replace", "20", "--class_to_replace", "3")
    assert result.returncode == 0, result.stderr
    for name in ("checkpoint.pth.tar", "eval_result.pth.tar", "eval_result.json"):
        assert os.path.isfile(tmp_path / f"{method}{name}")
    with open(tmp_path / f"{method}eval_result.json") as f:
        res = json.load(f)
    assert RESULT_KEYS <= set(res)
    assert res["forget_set_size"] == 20 and res["scenario"] == "class-subset"
    for key in ("UA", "RA", "TA", "MIA-Efficacy"):
        assert 0 <= res[key] <= 100, key
    assert set(res["accuracy"]) == {"retain", "forget", "val", "test"}
    assert all(0 <= v <= 100 for v in res["accuracy"].values())
    for attack in ("SVC_MIA_forget_efficacy", "SVC_MIA_training_privacy"):
        assert set(res[attack]) == {"correctness", "confidence", "entropy", "m_entropy", "prob"}
        assert all(0 <= v <= 1 for v in res[attack].values())
    assert math.isfinite(res["RTE"]) and res["RTE"] >= 0
    pruned_further = method == "FT_prune_bi"  # --rate 0.5 of the weights it starts with
    expected = {"sparse": 97.5 if pruned_further else 95.0, "dense": 50.0 if pruned_further else 0.0}[kind]
    assert res["sparsity"] == pytest.approx(expected, abs=0.1)

    saved = state_dict_of(load_checkpoint(tmp_path / f"{method}checkpoint.pth.tar"))
    assert all(torch.isfinite(v).all() for v in saved.values() if v.is_floating_point())
    if kind == "sparse":
        input_mask = pruner.extract_mask(state_dict_of(load_checkpoint(digits_masks["sparse"])))
        mask = pruner.extract_mask(saved)
        assert mask.keys() == input_mask.keys()
        if pruned_further:
            assert all(not bool(mask[k][input_mask[k] == 0].any()) for k in mask)
        elif method == "retrain_pipeline":  # a mask of its own, at the same sparsity
            assert any(not torch.equal(mask[k], input_mask[k]) for k in mask)
        else:
            assert all(torch.equal(mask[k], input_mask[k]) for k in mask)
        weights = pruner.dense_state_dict(saved)
        for key, m in mask.items():
            assert bool((weights[key[: -len("_mask")]][m == 0] == 0).all()), key
    assert (tmp_path / "forget_indexes.npy").is_file()


def test_retrain_forgets_a_whole_class(small_digits_masks, tmp_path):
    digits_masks = small_digits_masks
    result = run_script(
        "main_forget.py", *DIGITS, "--save_dir", tmp_path, "--mask", digits_masks["dense"], "--unlearn", "retrain",
        "--class_to_replace", "1", "--unlearn_epochs", "8", "--decreasing_lr", "5,7", "--unlearn_lr", "0.1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "retraineval_result.json") as f:
        res = json.load(f)
    assert res["forget_class"] == 1 and res["scenario"] == "class-wise"
    # A model that never saw class 1 almost never predicts it; it learns the other nine far above chance.
    assert res["UA"] >= 99 and res["RA"] > 50, (res["UA"], res["RA"])


def test_retrain_starts_from_the_initialisation_of_train_seed_under_the_mask(small_digits_masks, tmp_path):
    """Left out, --train_seed is --seed (2): the mask run's own seed, so its own initialisation."""
    digits_masks = small_digits_masks
    result = forget("retrain", digits_masks["sparse"], tmp_path, "--unlearn_epochs", "0")
    assert result.returncode == 0, result.stderr
    initial = load_checkpoint(digits_masks["sparse"].parent / "1checkpoint.pth.tar")["init_weight"]  # --prune_type lt keeps it
    saved = state_dict_of(load_checkpoint(tmp_path / "retraincheckpoint.pth.tar"))
    mask = pruner.extract_mask(saved)
    input_mask = pruner.extract_mask(state_dict_of(load_checkpoint(digits_masks["sparse"])))
    assert mask and all(torch.equal(mask[k], v) for k, v in input_mask.items())
    weights = pruner.dense_state_dict(saved)
    for key, value in pruner.dense_state_dict(initial).items():
        expected = value * mask[key + "_mask"] if key + "_mask" in mask else value
        assert torch.equal(weights[key], expected), key


def test_resume_skips_finished_stages(small_digits_masks, tmp_path):
    digits_masks = small_digits_masks
    first = forget("FT", digits_masks["sparse"], tmp_path)
    assert first.returncode == 0, first.stderr
    files = [tmp_path / f"FT{n}" for n in ("checkpoint.pth.tar", "eval_result.pth.tar", "eval_result.json")]
    before = {f: f.read_bytes() for f in files}

    again = forget("FT", digits_masks["sparse"], tmp_path, "--resume")
    assert again.returncode == 0, again.stderr
    assert "skipping unlearning" in again.stderr and "results unchanged" in again.stderr
    assert "FT epoch" not in again.stderr
    assert all(f.read_bytes() == before[f] for f in files)

    # Stopped after unlearning: only the evaluation runs.
    ck = load_checkpoint(files[0])
    torch.save({"state_dict": ck["state_dict"], "evaluation_result": {"unlearn_seconds": 1.5}}, files[0])
    files[1].unlink()
    files[2].unlink()
    evaluated = forget("FT", digits_masks["sparse"], tmp_path, "--resume")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "skipping unlearning" in evaluated.stderr and "FT epoch" not in evaluated.stderr
    with open(files[2]) as f:
        res = json.load(f)
    assert res["unlearn_seconds"] == 1.5 and res["accuracy"] == json.loads(before[files[2]])["accuracy"]


def test_mask_of_another_architecture_is_one_line(small_digits_masks, tmp_path):
    digits_masks = small_digits_masks
    result = run_script(
        "main_forget.py",
        "--dataset",
        "digits",
        *SMALL_DIGITS,
        "--arch",
        "resnet44s",
        "--save_dir",
        tmp_path,
        "--mask",
        digits_masks["sparse"],
        "--unlearn",
        "FT",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: --mask {digits_masks['sparse']} (--arch resnet44s, --dataset digits): the mask does not fit this")
    assert not tmp_path.joinpath("FTeval_result.json").exists() and not any(tmp_path.iterdir())
