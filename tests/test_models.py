import json
import os

import pytest
import torch

import pruner
from models import create_model, model_dict
from tests.conftest import DATA


def shapes(model):
    return {k: list(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("arch", ["resnet18", "resnet20s", "vgg16_bn", "resnet50"])
def test_state_dict_keys_and_shapes_are_the_originals(arch):
    with open(os.path.join(DATA, "original_state_dict_keys.json")) as f:
        reference = json.load(f)[arch]
    model = model_dict[arch](num_classes=10)
    assert shapes(model) == reference["dense"]
    pruner.pruning_model(model, 0.5)
    assert shapes(model) == reference["pruned"]


def test_original_pruned_checkpoint_gives_the_original_logits():
    checkpoint = torch.load(os.path.join(DATA, "original_resnet20s_pruned50.pth.tar"), weights_only=True)
    io = torch.load(os.path.join(DATA, "original_resnet20s_pruned50_io.pt"), weights_only=True)
    model = model_dict["resnet20s"](num_classes=10)
    pruner.pruning_model(model, 0.5)  # gives the model weight_orig / weight_mask keys
    model.load_state_dict(checkpoint["state_dict"], strict=True)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(io["x"]), io["logits"], atol=1e-4, rtol=1e-4)
    assert pruner.sparsity(model) == pytest.approx(50.0, abs=0.01)


def test_load_pruned_model_takes_the_mask_from_the_checkpoint():
    checkpoint = torch.load(os.path.join(DATA, "original_resnet20s_pruned50.pth.tar"), weights_only=True)
    io = torch.load(os.path.join(DATA, "original_resnet20s_pruned50_io.pt"), weights_only=True)
    model = model_dict["resnet20s"](num_classes=10)  # dense: no mask yet
    pruner.load_pruned_model(model, checkpoint["state_dict"])
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(io["x"]), io["logits"], atol=1e-4, rtol=1e-4)
    assert model.state_dict().keys() == checkpoint["state_dict"].keys()


@pytest.mark.parametrize("arch", sorted(model_dict))
def test_every_model_runs_with_its_class_count_and_statistics(arch):
    model = create_model(arch, num_classes=7, mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5)).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 7)
    assert model.normalize.mean.tolist() == pytest.approx([0.1, 0.2, 0.3])


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_imagenet_stem(arch):
    model = create_model(arch, num_classes=10, imagenet=True)
    assert model.conv1.kernel_size == (7, 7) and isinstance(model.maxpool, torch.nn.MaxPool2d)
    cifar = create_model(arch, num_classes=10)
    assert cifar.conv1.kernel_size == (3, 3) and isinstance(cifar.maxpool, torch.nn.Identity)


def test_small_resnet_shortcut_is_parameter_free_option_a():
    model = model_dict["resnet20s"](num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(0.27e6, rel=0.02)
    assert not any("shortcut" in k for k in model.state_dict())
