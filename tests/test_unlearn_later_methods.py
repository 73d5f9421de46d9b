"""The methods that came after the paper (RL, SalUn, SCRUB, boundary shrink / expanding): each one's defining property."""

import logging

import pytest
import torch
import torch.nn.functional as F

import pruner
import trainer
import unlearn
from dataset import TensorLoader
from paths import saliency_mask_path
from tests.test_unlearn import tiny_data
from tests.test_unlearn_api import FORGET, RETAIN, method_args, pruned_tiny_net, run_method
from unlearn.boundary_shrink import FGSM_BOUND, nearest_wrong_labels
from unlearn.SCRUB import SCRUB_EPOCHS, SCRUB_LR


def small_batches(data, forget_batch=4, retain_batch=8):
    loaders = {"retain": TensorLoader(data, RETAIN, retain_batch), "forget": TensorLoader(data, FORGET, forget_batch)}
    return {**loaders, "val": loaders["forget"], "test": loaders["forget"]}


def record_labels(monkeypatch):
    """Every batch's (loss sign, labels) as the training loop's cross-entropy sees them."""
    seen = []
    cross_entropy = trainer._cross_entropy

    def spy(logits, images, labels, **kwargs):
        seen.append(labels.clone())
        return cross_entropy(logits, images, labels, **kwargs)

    monkeypatch.setattr(trainer, "_cross_entropy", spy)
    return seen


def test_rl_trains_the_forget_set_on_seeded_random_labels_then_the_retain_set_on_its_own(monkeypatch):
    data = tiny_data(40)
    seen = record_labels(monkeypatch)
    args = method_args("RL", "--unlearn_epochs", "2", "--seed", "7")
    run_method("RL", small_batches(data), args)
    draws = torch.Generator().manual_seed(7)
    expected = []
    for _ in range(2):  # epochs: 10 forget samples in batches of 4, then 30 retain samples in batches of 8
        expected += [torch.randint(0, 3, (n,), generator=draws) for n in (4, 4, 2)]
        expected += [data.labels[RETAIN][i : i + 8] for i in range(0, 30, 8)]
    assert len(seen) == len(expected)
    for got, want in zip(seen, expected):
        assert torch.equal(got, want)
    assert not torch.equal(torch.cat(seen[:3]), data.labels[FORGET])  # not the true labels


@pytest.mark.parametrize("amount", [0.0, 0.5])
def test_salun_moves_only_the_salient_share_and_keeps_every_other_weight_bit_for_bit(amount, tmp_path):
    model = pruned_tiny_net(amount=amount)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = method_args("SalUn", "--unlearn_epochs", "2", "--salun_ratio", "0.3", "--unlearn_lr", "0.1", "--save_dir", str(tmp_path))
    assert args.momentum > 0 and args.weight_decay > 0
    run_method("SalUn", small_batches(tiny_data(40)), args, model)
    mask = torch.load(saliency_mask_path(tmp_path, 0.3), weights_only=True)
    buffers = dict(model.named_buffers())
    alive = {name: buffers.get(name.replace("_orig", "_mask"), torch.ones_like(p)).bool() for name, p in before.items()}
    live = sum(int(a.sum()) for a in alive.values())
    assert sum(int(m.sum()) for m in mask.values()) == int(live * 0.3)  # the asked share of the live weights
    moved = 0
    for name, p in model.named_parameters():
        keep = mask[name.removesuffix("_orig")].bool()
        assert torch.equal(p.detach()[~keep], before[name][~keep]), name  # frozen: exactly as loaded
        moved += int((p.detach()[keep] != before[name][keep]).sum())
        assert not bool(keep[~alive[name]].any())  # a pruned weight is never salient
    assert moved > 0
    if amount:
        assert bool((model.conv1.weight[model.conv1.weight_mask == 0] == 0).all())


def test_salun_uses_a_mask_made_elsewhere(tmp_path):
    model = pruned_tiny_net(amount=0)
    mask = {name: (torch.rand_like(p) < 0.5).to(torch.uint8) for name, p in model.named_parameters()}
    torch.save(mask, tmp_path / "with_0.5.pt")
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    run_method("SalUn", small_batches(tiny_data(40)), method_args("SalUn", "--mask_path", str(tmp_path / "with_0.5.pt")), model)
    for name, p in model.named_parameters():
        assert torch.equal(p.detach()[mask[name] == 0], before[name][mask[name] == 0]), name


@pytest.mark.parametrize("msteps", [0, 1])
def test_scrub_keeps_its_teacher_and_runs_the_forget_pass_for_msteps_epochs(msteps, monkeypatch, caplog):
    teachers = []
    clone = pruner.clone_model
    monkeypatch.setattr(pruner, "clone_model", lambda model: teachers.append(clone(model)) or teachers[-1])
    model = pruned_tiny_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="unlearn_sparse"):
        run_method("SCRUB", small_batches(tiny_data(40)), method_args("SCRUB", "--msteps", str(msteps), "--unlearn_lr", "0.05"), model)
    assert len(teachers) == 1
    assert all(torch.equal(teachers[0].state_dict()[k], v) for k, v in before.items())  # the teacher never changes
    assert any(not torch.equal(model.state_dict()[k], v) for k, v in before.items())  # the student does
    forget_passes = [r.message for r in caplog.records if "(forget (max))" in r.message]
    assert len(forget_passes) == msteps and all("SCRUB epoch 1/" in m for m in forget_passes)
    assert len([r for r in caplog.records if r.message.startswith("SCRUB epoch")]) == msteps + 2  # 2 epochs, a retain pass each


def test_scrub_kl_is_its_distill_kl():
    from unlearn.SCRUB import distill_kl

    student, teacher = torch.randn(5, 3), torch.randn(5, 3)
    p_t = F.softmax(teacher / 4, dim=1)
    expected = (p_t * (p_t.log() - F.log_softmax(student / 4, dim=1))).sum() * 16 / 5
    torch.testing.assert_close(distill_kl(student, teacher, 4.0), expected)


def test_boundary_shrink_relabels_with_the_frozen_copys_prediction_after_fgsm():
    data = tiny_data(64)
    images, labels = data.images.float() / 255, data.labels
    frozen = pruned_tiny_net(amount=0)
    optimizer = torch.optim.SGD(frozen.parameters(), lr=0.5)
    for _ in range(100):  # fit the images a little, so that some are classified right
        optimizer.zero_grad()
        F.cross_entropy(frozen(images), labels).backward()
        optimizer.step()
    frozen.eval()
    x = images.clone().requires_grad_(True)
    grad = torch.autograd.grad(F.cross_entropy(frozen(x), labels), x)[0]
    adversarial = torch.round((images + FGSM_BOUND * grad.sign()).clamp(0, 1) * 255) / 255
    reference = frozen(adversarial).argmax(dim=1)
    new = nearest_wrong_labels(frozen)(images, labels, (0, len(labels), len(labels)))
    assert torch.equal(new, reference)
    attacked = frozen(images).argmax(dim=1).eq(labels) & reference.ne(labels)  # right before the attack, wrong after
    assert bool(attacked.any()) and bool(new[attacked].ne(labels[attacked]).all())


def test_boundary_expanding_ends_with_the_models_own_keys_and_shapes():
    model = pruned_tiny_net()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    before = model.fc.weight.detach().clone()
    run_method("boundary_expanding", small_batches(tiny_data(40)), method_args("boundary_expanding", "--unlearn_lr", "0.1"), model)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    assert not torch.equal(model.fc.weight, before)  # the real classes' rows trained against the extra one


def test_scrub_takes_its_sources_rate_and_epochs_when_left_out():
    args = method_args("SCRUB")  # --unlearn_epochs 2 given, --unlearn_lr left out
    assert (args.unlearn_lr, args.unlearn_epochs) == (SCRUB_LR, 2)
    import arg_parser

    bare = arg_parser.parse_args(["--unlearn", "SCRUB"])
    assert (bare.unlearn_lr, bare.unlearn_epochs) == (SCRUB_LR, SCRUB_EPOCHS)


class Stop(Exception):
    """The run dies right after writing an epoch checkpoint."""


@pytest.mark.parametrize("method", ["RL", "SalUn", "SCRUB", "boundary_shrink", "boundary_expanding"])
def test_interrupted_after_an_epoch_checkpoint_each_resumes_to_the_same_end(method, tmp_path, monkeypatch):
    """Shuffled, augmented loaders; the teacher, frozen copy, saliency mask, label draws and extra class come back."""
    import unlearn.loop as loop
    import unlearning_run
    from dataset import Augment

    data = tiny_data(40)
    args = method_args(method, "--unlearn_epochs", "3", "--unlearn_lr", "0.05", "--msteps", "2", "--checkpoint_every_s", "0")

    def run(save_dir, progress=None):
        loaders = {
            name: TensorLoader(data, idx, 8, shuffle=True, augment=Augment(8, 1), seed=args.seed)
            for name, idx in (("retain", RETAIN), ("forget", FORGET))
        }
        args.save_dir = str(save_dir)
        model = pruned_tiny_net()
        unlearning_run.unlearn_and_save(unlearn.METHODS[method], loaders, model, args, torch.device("cpu"), save_dir, {}, progress)
        return model.state_dict()

    whole = run(tmp_path / "whole")
    save = loop.EpochCheckpoints.save

    def save_then_die(self, model, optimizer, scheduler, loaders, epochs_done):
        save(self, model, optimizer, scheduler, loaders, epochs_done)
        if epochs_done == 2:
            raise Stop

    monkeypatch.setattr(loop.EpochCheckpoints, "save", save_then_die)
    with pytest.raises(Stop):
        run(tmp_path / "killed")
    monkeypatch.setattr(loop.EpochCheckpoints, "save", save)
    _, progress = unlearning_run.read_resume_point(pruned_tiny_net(), tmp_path / "killed", method, torch.device("cpu"))
    assert progress["epoch"] == 2
    resumed = run(tmp_path / "killed", progress)
    assert resumed.keys() == whole.keys() and all(torch.equal(resumed[k], whole[k]) for k in whole)
