import json
import os

import pytest
import torch

import dataset
import pruner
from models import model_dict
from tests.conftest import run_script


def test_synflow_reaches_the_rate_on_resnet20s_and_leaves_the_model_untouched():
    torch.manual_seed(0)
    model = model_dict["resnet20s"](num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mask = pruner.synflow_mask(model, None, 0.9, rounds=30)
    assert pruner.sparsity(mask) == pytest.approx(90.0, abs=0.1)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)
    assert not pruner.is_pruned(model)


@pytest.mark.slow
def test_synflow_at_extreme_sparsity_keeps_every_layer_of_vgg_connected(monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("SynFlow read data")

    monkeypatch.setattr(dataset, "load_dataset", no_data)
    torch.manual_seed(0)
    model = model_dict["vgg16_bn"](num_classes=10)
    mask = pruner.synflow_mask(model, None, 0.999, rounds=40)
    assert pruner.sparsity(mask) == pytest.approx(99.9, abs=0.01)
    kept = {k: int(v.sum()) for k, v in mask.items()}
    assert len(kept) == 13 and min(kept.values()) > 0, kept
    assert pruner.synflow_objective(model, mask) > 0
    magnitude = pruner.magnitude_mask(model, None, 0.999)
    assert any(not torch.equal(mask[k], magnitude[k]) for k in mask)
    # global magnitude pruning at this rate disconnects the network; SynFlow does not
    assert pruner.synflow_objective(model, magnitude) == 0 or min(int(v.sum()) for v in magnitude.values()) == 0


@pytest.mark.slow
def test_main_synflow_trains_a_90_percent_sparse_resnet20s(tmp_path):
    result = run_script(
        "main_synflow.py", "--dataset", "digits", "--arch", "resnet20s", "--epochs", "6", "--decreasing_lr", "4,5",
        "--batch_size", "64", "--rate", "0.9", "--synflow_rounds", "20", "--save_dir", tmp_path,
        "--prune_type", "rewind_lt", "--rewind_epoch", "8", "--pruning_times", "1", "--num_workers", "8",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in ("0checkpoint.pth.tar", "0model_SA_best.pth.tar", "0net_train.png", "imp_summary.json"):
        assert os.path.isfile(tmp_path / name), name
    with open(tmp_path / "imp_summary.json") as f:
        (state,) = json.load(f)["states"]
    assert state["sparsity"] == pytest.approx(90.0, abs=0.1)
    assert state["test_acc"] > 30, state  # it learns through the 90%-sparse network: far above chance (10%)
