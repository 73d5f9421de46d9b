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


# ---------------------------------------------------------------- checkpoints both ways with the original's code


def original_prune_model_custom(model, mask_dict):
    """The original's `pruner/utils.py::prune_model_custom`, as it is."""
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            if name + ".weight_mask" in mask_dict:
                torch.nn.utils.prune.CustomFromMask.apply(m, "weight", mask=mask_dict[name + ".weight_mask"])


def original_load_mask_checkpoint(model, path):
    """How the original's `main_forget.py` reads --mask: extract_mask, prune_model_custom, load_state_dict."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in checkpoint.keys():
        checkpoint = checkpoint["state_dict"]
    current_mask = {key: checkpoint[key].clone() for key in checkpoint if "mask" in key}  # its extract_mask
    original_prune_model_custom(model, current_mask)
    model.load_state_dict(checkpoint, strict=False)


def test_our_sparse_checkpoint_is_read_by_the_original_code_as_we_read_it(small_digits_masks):
    digits_masks = small_digits_masks
    """Our files hold masks as bool (a quarter of the bytes); the original's code loads them unchanged."""
    ours = torch.load(digits_masks["sparse"], weights_only=True)["state_dict"]
    masks = [k for k in ours if k.endswith(".weight_mask")]
    assert masks and all(ours[k].dtype == torch.bool for k in masks)
    with open(os.path.join(DATA, "original_state_dict_keys.json")) as f:
        assert shapes_of(ours) == json.load(f)["resnet20s"]["pruned"]  # the original's keys and shapes

    by_original = model_dict["resnet20s"](num_classes=10)
    original_load_mask_checkpoint(by_original, digits_masks["sparse"])
    by_us = model_dict["resnet20s"](num_classes=10)
    pruner.load_pruned_model(by_us, ours)
    for name, module in pruner.conv_layers(by_original):
        assert module.weight_mask.dtype == torch.float32
        assert torch.equal(module.weight_mask, ours[name + ".weight_mask"].float())
    assert pruner.sparsity(by_original) == pytest.approx(95.0, abs=0.1)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    by_original.eval(), by_us.eval()
    with torch.no_grad():
        assert torch.equal(by_original(x), by_us(x))


def test_a_compact_state_dict_keeps_keys_order_and_meaning():
    model = model_dict["resnet20s"](num_classes=10)
    pruner.pruning_model(model, 0.5)
    full = model.state_dict()
    compact = pruner.compact_state_dict(full)
    assert list(compact) == list(full)
    for key, value in full.items():
        if key.endswith(".weight_mask"):
            assert compact[key].dtype == torch.bool and torch.equal(compact[key].float(), value)
            assert compact[key].element_size() * 4 == value.element_size()
        else:
            assert compact[key] is value
    # extract_mask gives the float masks back, whichever way the file holds them
    assert all(v.dtype == torch.float32 for v in pruner.extract_mask(compact).values())


def shapes_of(state_dict):
    return {k: list(v.shape) for k, v in state_dict.items()}
