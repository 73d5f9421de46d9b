import pytest
import torch

import pruner
from errors import UserError
from models import model_dict


def conv_zero_positions(model):
    return {name: (m.weight == 0).clone() for name, m in pruner.conv_layers(model)}


def test_global_l1_pruning_reaches_the_rate_and_removes_the_smallest_weights():
    torch.manual_seed(0)
    model = model_dict["resnet20s"](num_classes=10)
    weights = torch.cat([m.weight.detach().abs().flatten() for _, m in pruner.conv_layers(model)])
    mask = pruner.magnitude_mask(model, None, 0.95)
    assert pruner.sparsity(mask) == pytest.approx(95.0, abs=0.1)
    kept = torch.cat([mask[k].flatten() for k in mask]).bool()
    assert weights[kept].min() >= weights[~kept].max()


def test_imp_sparsity_and_nested_masks():
    torch.manual_seed(0)
    model = model_dict["resnet20s"](num_classes=10)
    previous = None
    for state, expected in enumerate([20.0, 36.0, 48.8]):
        pruner.pruning_model(model, 0.2)
        assert pruner.sparsity(model) == pytest.approx(expected, abs=0.1)
        zeros = conv_zero_positions(model)
        if previous is not None:
            assert all(bool((zeros[k] | ~previous[k]).all()) for k in zeros), f"state {state + 1} revived a pruned weight"
        previous = zeros
        with torch.no_grad():  # training would move the survivors; the masked ones stay zero
            for _, m in pruner.conv_layers(model):
                m.weight_orig.add_(torch.randn_like(m.weight_orig) * 0.01)


def test_random_pruning_reaches_the_rate_and_nests():
    torch.manual_seed(0)
    model = model_dict["resnet20s"](num_classes=10)
    pruner.pruning_model_random(model, 0.5)
    first = pruner.current_mask(model)
    pruner.pruning_model_random(model, 0.5)
    assert pruner.sparsity(model) == pytest.approx(75.0, abs=0.1)
    second = pruner.current_mask(model)
    assert all(bool((second[k] <= first[k]).all()) for k in first)


def test_masked_weights_stay_zero_through_training_steps():
    model = model_dict["resnet20s"](num_classes=10)
    pruner.pruning_model(model, 0.9)
    mask = pruner.current_mask(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for _ in range(2):
        loss = model(torch.rand(4, 3, 32, 32)).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for name, m in pruner.conv_layers(model):
        assert bool((m.weight[mask[name + ".weight_mask"] == 0] == 0).all())


def test_extract_mask_and_prune_model_custom_round_trip():
    model = model_dict["resnet20s"](num_classes=10)
    pruner.pruning_model(model, 0.3)
    mask = pruner.extract_mask(model.state_dict())
    other = model_dict["resnet20s"](num_classes=10)
    pruner.prune_model_custom(other, mask)
    assert all(torch.equal(mask[k], v) for k, v in pruner.current_mask(other).items())
    assert pruner.check_sparsity(other) == pytest.approx(70.0, abs=0.1)  # the original returned the remaining share
    pruner.remove_prune(other)
    assert "conv1.weight" in other.state_dict() and "conv1.weight_mask" not in other.state_dict()


def test_mask_for_another_architecture_is_refused_in_one_line():
    mask = pruner.full_mask(model_dict["resnet20s"](num_classes=10))
    with pytest.raises(UserError, match="another --arch"):
        pruner.apply_mask(model_dict["resnet44s"](num_classes=10), mask)
    wrong_shape = {k: torch.ones(v.shape[0], 1, 3, 3) for k, v in mask.items()}
    with pytest.raises(UserError, match="shape"):
        pruner.apply_mask(model_dict["resnet20s"](num_classes=10), wrong_shape)


def test_dense_state_dict_multiplies_the_mask():
    model = model_dict["resnet20s"](num_classes=10)
    pruner.pruning_model(model, 0.5)
    dense = pruner.dense_state_dict(model.state_dict())
    assert torch.equal(dense["conv1.weight"], model.conv1.weight)
    assert not any(k.endswith(("_orig", "_mask")) for k in dense)
