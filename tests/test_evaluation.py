import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dataset import TensorLoader
from evaluation import SVC_MIA, attack_features, mia_training_privacy


def test_attack_features_by_hand():
    prob = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]])
    labels = torch.tensor([0, 2])
    f = attack_features(prob, labels)
    assert f["correctness"].ravel().tolist() == [1.0, 0.0]
    assert f["confidence"].ravel() == pytest.approx([0.7, 0.3])
    assert f["entropy"][0, 0] == pytest.approx(-(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1)))
    assert f["m_entropy"][0, 0] == pytest.approx(0.162, abs=5e-4)
    expected = -(0.7 * math.log(0.3)) - 0.1 * math.log(0.9) - 0.6 * math.log(0.4)
    assert f["m_entropy"][1, 0] == pytest.approx(expected)
    assert f["prob"].shape == (2, 3)


def test_features_are_finite_at_certainty():
    f = attack_features(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    assert all(bool(torch.isfinite(torch.as_tensor(v)).all()) for v in f.values())


def memorising_model(digits, n_train=120, steps=400):
    torch.manual_seed(0)
    model = nn.Sequential(nn.AvgPool2d(4), nn.Flatten(), nn.Linear(3 * 8 * 8, 256), nn.ReLU(), nn.Linear(256, 10))
    x = digits.train.images[:n_train].float() / 255
    noisy = digits.train.labels[:n_train].clone()
    noisy[::3] = (noisy[::3] + 1) % 10  # labels that can only be memorised
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(steps):
        loss = F.cross_entropy(model(x), noisy)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, noisy


def test_training_privacy_attack_detects_memorisation(digits):
    from dataset import ImageSet

    model, noisy = memorising_model(digits)
    members = ImageSet(digits.train.images[:120], noisy)
    retain = TensorLoader(members, batch_size=64)
    test = TensorLoader(digits.test, range(120), batch_size=64)
    scores = mia_training_privacy(model, retain, test)
    assert set(scores) == {"correctness", "confidence", "entropy", "m_entropy", "prob"}
    assert scores["confidence"] > 0.5 and scores["correctness"] > 0.5


def test_svc_mia_accepts_a_missing_target(digits):
    model, _ = memorising_model(digits, steps=50)
    loader = TensorLoader(digits.train, range(60), batch_size=32)
    test = TensorLoader(digits.test, range(60), batch_size=32)
    scores = SVC_MIA(shadow_train=loader, target_train=None, target_test=test, shadow_test=test, model=model)
    assert all(0 <= v <= 1 for v in scores.values())


def test_parallel_fits_give_the_sequential_scores(digits):
    model, _ = memorising_model(digits, steps=100)
    retain = TensorLoader(digits.train, range(300), batch_size=64)
    test = TensorLoader(digits.test, batch_size=64)
    args = dict(shadow_train=retain.subset(0, 150), target_train=retain.subset(150, None), target_test=test.subset(180, None))
    sequential = SVC_MIA(**args, shadow_test=test.subset(0, 180), model=model, workers=1)
    parallel = SVC_MIA(**args, shadow_test=test.subset(0, 180), model=model, workers=5)
    # Predictions cut into chunks of 16 rows (the default makes chunks of 256 rows or more).
    chunked = SVC_MIA(**args, shadow_test=test.subset(0, 180), model=model, workers=2, chunk_rows=16)
    assert parallel == sequential
    assert chunked == sequential


def test_training_privacy_with_a_retain_set_smaller_than_the_test_set(digits):
    # A U-LiRA shadow model retains ~120 images against digits' 360 test images: the
    # original's h = len(test) // 2 would leave no target members (and crashed here).
    model, _ = memorising_model(digits, steps=50)
    retain = TensorLoader(digits.train, range(100), batch_size=64)
    test = TensorLoader(digits.test, batch_size=64)
    scores = mia_training_privacy(model, retain, test)
    assert all(0 <= v <= 1 for v in scores.values())
    empty = TensorLoader(digits.train, range(0), batch_size=64)
    shadow = dict(shadow_train=retain.subset(0, 50), shadow_test=test.subset(0, 50), target_test=test.subset(50, None))
    assert SVC_MIA(**shadow, target_train=empty, model=model) == SVC_MIA(**shadow, target_train=None, model=model)


def test_the_imagenet_cap_limits_every_set_the_membership_attacks_fit_or_score(monkeypatch, digits):
    from dataset import TensorLoader
    from evaluation import metrics

    sizes = []
    monkeypatch.setattr(metrics, "SVC_MIA", lambda model, **sets: sizes.append({k: v.num_samples for k, v in sets.items() if v}))
    retain, test = TensorLoader(digits.train, torch.arange(500)), TensorLoader(digits.test, torch.arange(300))
    forget = TensorLoader(digits.train, torch.arange(500, 540))
    metrics.mia_forget_efficacy(None, retain, forget, test, cap=100)
    metrics.mia_training_privacy(None, retain, test, cap=100)
    assert sizes[0] == {"shadow_train": 100, "shadow_test": 100, "target_test": 40}
    assert sizes[1] == {"shadow_train": 50, "target_train": 50, "target_test": 50, "shadow_test": 50}
    metrics.mia_training_privacy(None, retain, test)  # uncapped: as before, every retain image past h is a target
    assert sizes[2] == {"shadow_train": 150, "target_train": 350, "target_test": 150, "shadow_test": 150}


def test_the_capped_attack_sets_are_drawn_from_every_class_of_a_class_sorted_set(monkeypatch, digits):
    """ImageFolder lists ImageNet class by class: a capped set taken from the front would be a few classes."""
    from dataset import TensorLoader
    from evaluation import metrics

    seen = []
    monkeypatch.setattr(metrics, "SVC_MIA", lambda model, **sets: seen.append(sets))
    by_class = lambda data: torch.argsort(data.labels, stable=True)  # noqa: E731
    retain, test = TensorLoader(digits.train, by_class(digits.train)), TensorLoader(digits.test, by_class(digits.test))
    forget = TensorLoader(digits.train, torch.arange(10))
    metrics.mia_forget_efficacy(None, retain, forget, test, cap=100)
    metrics.mia_training_privacy(None, retain, test, cap=100)
    for sets in seen:
        drawn = {name: loader for name, loader in sets.items() if loader is not None}
        if sets["target_train"] is None:
            del drawn["target_test"]  # forget efficacy's targets: the forget set, as given
        for name, loader in drawn.items():
            assert len(loader.labels.unique()) == 10, name
    privacy = seen[1]
    members = set(privacy["shadow_train"].indices.tolist())
    assert members.isdisjoint(privacy["target_train"].indices.tolist())
    assert set(privacy["shadow_test"].indices.tolist()).isdisjoint(privacy["target_test"].indices.tolist())
    again = []
    monkeypatch.setattr(metrics, "SVC_MIA", lambda model, **sets: again.append(sets))
    metrics.mia_forget_efficacy(None, retain, forget, test, cap=100)
    assert torch.equal(again[0]["shadow_train"].indices, seen[0]["shadow_train"].indices)  # a fixed draw


def test_weight_change_by_hand_counts_effective_weights_of_parameters_only():
    import torch

    import pruner
    from evaluation import weight_change

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 2, bias=False), torch.nn.BatchNorm2d(1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[[[1.0, -2.0], [3.0, -4.0]]]]))
    pruner.apply_mask(model, {"0.weight_mask": torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])})  # -4 pruned: effective 0
    original = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model[0].weight_orig.copy_(torch.tensor([[[[0.5, -2.5], [3.0, -9.0]]]]))  # 1 shrinks, -2 grows, 3 stays; -4 still masked
        model[1].weight.fill_(0.25)  # batch norm's weight is a parameter too: 1 -> 0.25
        model[1].running_mean.fill_(100.0)  # a buffer: not counted
    change = weight_change(model, original)
    # before: |1| + |-2| + |3| + 0 + bn weight 1 + bn bias 0 = 7; after: 0.5 + 2.5 + 3 + 0 + 0.25 + 0 = 6.25
    assert change["l1_before"] == 7.0 and change["l1_after"] == 6.25 and change["l1_ratio"] == 6.25 / 7
    assert change["weights"] == 4 and change["towards_zero"] == 2 / 4  # non-zero before: 1, -2, 3, bn weight; shrunk: 1 and bn weight
