"""The method API of the original, and the defining property of each of its other methods.

`unlearn.get_unlearn_method(name)(data_loaders, model, criterion, args)` takes this
project's TensorLoaders or ordinary DataLoaders alike.
"""

import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import arg_parser
import pruner
import unlearn
from dataset import TensorLoader
from tests.test_unlearn import TinyNet, loop_gradients, tiny_data
from unlearn.retrain_sam import SAM_RHO

N = 40
FORGET = list(range(0, N, 4))
RETAIN = [i for i in range(N) if i % 4]
SPLITS = (("retain", RETAIN), ("forget", FORGET), ("val", FORGET), ("test", FORGET))


def method_args(method, *options):
    """What arg_parser.parse_args() returns, as code built on the original calls the methods with (no other step)."""
    args = arg_parser.parse_args(["--unlearn", method, "--unlearn_epochs", "2", "--decreasing_lr", "1", "--iu_damping", "5", *options])
    args.num_classes, args.forget_class = 3, None
    return args


def tensor_loaders(data, batch_size=8):
    """This project's loaders, unshuffled and unaugmented."""
    return {name: TensorLoader(data, idx, batch_size) for name, idx in SPLITS}


def plain_loaders(data, batch_size=8):
    """Ordinary DataLoaders over the same samples in the same order."""

    def loader(idx):
        return DataLoader(TensorDataset(data.images[idx].float() / 255, data.labels[idx]), batch_size=batch_size)

    return {name: loader(idx) for name, idx in SPLITS}


def pruned_tiny_net(seed=0, amount=0.5):
    torch.manual_seed(seed)
    model = TinyNet()
    if amount:
        pruner.pruning_model(model, amount)
    return model


def run_method(method, loaders, args, model=None, seed=1):
    model = model if model is not None else pruned_tiny_net()
    torch.manual_seed(seed)
    unlearn.get_unlearn_method(method)(loaders, model, nn.CrossEntropyLoss(), args)
    return model


@pytest.mark.parametrize("method", list(unlearn.UNLEARN_METHODS))
def test_every_method_gives_the_same_result_on_ordinary_dataloaders(method):
    data = tiny_data(N)
    args = method_args(method, "--rate", "0.5", "--unlearn_lr", "0.05", "--epochs", "2")
    ours = run_method(method, tensor_loaders(data), args).state_dict()
    plain = run_method(method, plain_loaders(data), args).state_dict()
    assert ours.keys() == plain.keys()
    for key, value in ours.items():
        torch.testing.assert_close(plain[key], value, rtol=1e-6, atol=1e-7, msg=key)
    if method != "raw":
        before = pruned_tiny_net().state_dict()
        assert any(not torch.equal(before[k], v) for k, v in ours.items() if k in before), f"{method} changed nothing"


def test_raw_leaves_every_weight_bit_for_bit():
    model = pruned_tiny_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run_method("raw", tensor_loaders(tiny_data(N)), method_args("raw"), model)
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_ft_l1_is_l1_sparse_under_the_original_name():
    data, args = tiny_data(N), method_args("FT_l1", "--alpha", "0.01")
    ft_l1 = run_method("FT_l1", tensor_loaders(data), args).state_dict()
    args.unlearn = "FT_prune"
    l1_sparse = run_method("FT_prune", tensor_loaders(data), args).state_dict()
    assert all(torch.equal(ft_l1[k], l1_sparse[k]) for k in ft_l1)


def test_retrain_pipeline_prunes_anew_from_the_retain_set_alone(tmp_path):
    """Retrain (pipeline) is the pruning run on the retain set: the forget set's contents change nothing,
    the retain set's do, and it ends at the pruning run's sparsity with a mask of its own."""

    def loaders(data):  # validation on retain samples too: the forget set must reach nothing
        return {name: TensorLoader(data, RETAIN if name != "forget" else FORGET, 8) for name in ("retain", "forget", "val", "test")}

    data = tiny_data(N)
    options = ("--epochs", "2", "--pruning_times", "2", "--rate", "0.5", "--prune_type", "lt", "--lr", "0.05")
    args = method_args("retrain_pipeline", *options, "--save_dir", str(tmp_path / "a"))
    first = run_method("retrain_pipeline", loaders(data), args, pruned_tiny_net(amount=0.8)).state_dict()
    assert abs(pruner.sparsity(pruner.extract_mask(first)) - 50.0) < 1.0  # its own mask, not the 80% one it was handed
    assert (tmp_path / "a" / "retrain_pipeline_run" / "1model_SA_best.pth.tar").is_file()  # main_imp.py's files
    other_forget = tiny_data(N, seed=1)  # the same retain samples, other forget samples
    other_forget.images[RETAIN], other_forget.labels[RETAIN] = data.images[RETAIN], data.labels[RETAIN]
    args.save_dir = str(tmp_path / "b")
    second = run_method("retrain_pipeline", loaders(other_forget), args, pruned_tiny_net(amount=0.8)).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    args.save_dir = str(tmp_path / "c")
    other_retain = run_method("retrain_pipeline", loaders(tiny_data(N, seed=2)), args, pruned_tiny_net(amount=0.8)).state_dict()
    assert any(not torch.equal(first[k], other_retain[k]) for k in first)


def one_step_args(method, *options):
    """One epoch over one batch of plain SGD (no momentum, no weight decay): the update is the gradient."""
    return method_args(method, "--unlearn_epochs", "1", "--momentum", "0", "--weight_decay", "0", "--unlearn_lr", "0.1", *options)


def test_ga_l1_adds_a_constant_l1_step_to_ga():
    data = tiny_data(N)
    loaders = tensor_loaders(data, batch_size=N)
    start = {k: v.clone() for k, v in pruned_tiny_net(amount=0).named_parameters()}
    ga = dict(run_method("GA", loaders, one_step_args("GA"), pruned_tiny_net(amount=0)).named_parameters())
    ga_l1 = dict(run_method("GA_l1", loaders, one_step_args("GA_l1", "--alpha", "0.01"), pruned_tiny_net(amount=0)).named_parameters())
    for name, w in start.items():
        torch.testing.assert_close(ga_l1[name] - ga[name], -0.1 * 0.01 * w.sign(), rtol=1e-4, atol=1e-7, msg=name)


def test_old_fisher_is_the_originals_per_sample_loop():
    data, alpha = tiny_data(N), 1e-9
    model = pruned_tiny_net()
    params = [p.detach().clone() for p in model.parameters()]
    x = data.images[RETAIN].float() / 255
    # The original: (d log p_y / d theta + 1e-8)^2 averaged over the retain samples, one by one.
    information = ((1e-8 - loop_gradients(model, x, data.labels[RETAIN])) ** 2).mean(dim=0)
    torch.manual_seed(7)
    expected, start = [], 0
    for p in params:
        f = information[start : start + p.numel()].view_as(p)
        start += p.numel()
        noise = torch.sqrt(alpha / f).clamp(max=1e-3) * torch.empty_like(p).normal_(0, 1)
        expected.append(p + (noise * 10 if p.shape[-1] == 3 else noise))
    got = run_method("fisher", tensor_loaders(data), method_args("fisher", "--alpha", str(alpha)), model, seed=7)
    for name, p, e in zip([n for n, _ in got.named_parameters()], got.parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-4, atol=1e-9, msg=name)
    assert any(bool((e - p0).abs().max() < 1e-3) for e, p0 in zip(expected, params))  # alpha matters somewhere


@pytest.mark.parametrize("amount", [0.0, 0.5])
def test_ft_prune_bi_prunes_to_rate_every_second_epoch(amount, caplog):
    model = pruned_tiny_net(amount=amount)
    live_before = int(model.conv1.weight_mask.sum()) if amount else model.conv1.weight.numel()
    input_mask = pruner.current_mask(model)
    with caplog.at_level(logging.INFO, logger="unlearn_sparse"):
        args = method_args("FT_prune_bi", "--unlearn_epochs", "4", "--rate", "0.75")
        run_method("FT_prune_bi", tensor_loaders(tiny_data(N)), args, model)
    mask = pruner.current_mask(model)["conv1.weight_mask"]
    assert abs(int(mask.sum()) - 0.25 * live_before) <= 1  # --rate of the live weights gone, in two steps of 50%
    assert not bool(mask[input_mask["conv1.weight_mask"] == 0].any())  # nothing pruned comes back
    assert bool((model.conv1.weight[mask == 0] == 0).all())
    prunes = [r.message for r in caplog.records if "FT_prune_bi: pruned 0.5" in r.message]
    epochs = [r.message.split()[2] for r in caplog.records if r.message.startswith("FT_prune_bi epoch")]
    assert len(prunes) == 2 and epochs == ["1/4", "2/4", "3/4", "4/4"]


def test_retrain_ls_trains_with_the_originals_label_smoothing():
    data = tiny_data(N)
    loaders = tensor_loaders(data, batch_size=N)
    reference = pruned_tiny_net(amount=0)
    reference.train()
    images, labels = next(iter(loaders["retain"]))
    log_p = F.log_softmax(reference(images), dim=-1)
    eps, classes = 0.1, log_p.shape[-1]  # the original's LS.py
    loss = -log_p.sum(dim=-1).mean() * eps / classes + (1 - eps) * F.nll_loss(log_p, labels)
    grads = torch.autograd.grad(loss, list(reference.parameters()))
    got = run_method("retrain_ls", loaders, one_step_args("retrain_ls"), pruned_tiny_net(amount=0))
    for (name, p), p0, g in zip(got.named_parameters(), reference.parameters(), grads):
        torch.testing.assert_close(p.detach(), p0.detach() - 0.1 * g, rtol=1e-5, atol=1e-7, msg=name)


def test_retrain_sam_takes_sams_two_steps():
    data = tiny_data(N)
    loaders = tensor_loaders(data, batch_size=N)
    images, labels = next(iter(loaders["retain"]))

    def gradient(weights):
        model = pruned_tiny_net(amount=0)
        with torch.no_grad():
            for p, w in zip(model.parameters(), weights):
                p.copy_(w)
        model.train()
        return torch.autograd.grad(F.cross_entropy(model(images), labels), list(model.parameters()))

    w = [p.detach().clone() for p in pruned_tiny_net(amount=0).parameters()]
    g = gradient(w)
    norm = torch.linalg.vector_norm(torch.stack([(p.abs() * gp).norm() for p, gp in zip(w, g)]))
    climbed = [p + SAM_RHO * p.pow(2) * gp / (norm + 1e-12) for p, gp in zip(w, g)]  # adaptive SAM's first step
    g_sharp = gradient(climbed)
    decay = 5e-4
    expected = [p - 0.1 * (gs + decay * p) for p, gs in zip(w, g_sharp)]  # the second: SGD from w (momentum's first step)

    model = pruned_tiny_net(amount=0)
    forwards = []
    model.register_forward_hook(lambda *_: forwards.append(1))
    run_method("retrain_sam", loaders, method_args("retrain_sam", "--unlearn_epochs", "1", "--unlearn_lr", "0.1"), model)
    assert len(forwards) == 2  # one batch, two passes
    for (name, p), e in zip(model.named_parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-7, msg=name)


def test_rewind_starts_from_rewind_pth_under_the_mask_with_the_schedule_advanced(tmp_path, caplog):
    rewind_file = tmp_path / "epoch_2_rewind_weight.pt"
    torch.save(pruned_tiny_net(seed=5, amount=0).state_dict(), rewind_file)  # a dense state dict, as main_imp.py writes
    rewound = pruned_tiny_net(seed=5, amount=0).state_dict()
    options = ["--rewind_epoch", "2", "--rewind_pth", str(rewind_file), "--decreasing_lr", "2", "--unlearn_lr", "0.1"]

    model = pruned_tiny_net()
    mask = pruner.current_mask(model)
    run_method("FT", tensor_loaders(tiny_data(N)), method_args("FT", *options, "--unlearn_epochs", "0"), model)
    assert all(torch.equal(pruner.current_mask(model)[k], mask[k]) for k in mask)
    for key, value in pruner.dense_state_dict(model.state_dict()).items():
        expected = rewound[key] * mask[key + "_mask"] if key + "_mask" in mask else rewound[key]
        assert torch.equal(value, expected), key

    with caplog.at_level(logging.INFO, logger="unlearn_sparse"):
        run_method("FT", tensor_loaders(tiny_data(N)), method_args("FT", *options, "--unlearn_epochs", "1"))
    assert "FT epoch 1/1 lr 0.01 " in caplog.text  # 0.1 decayed at milestone 2, reached by the rewind


def test_an_unknown_method_is_named_as_the_original_names_it():
    with pytest.raises(NotImplementedError, match="Unlearn method nosuch not implemented"):
        unlearn.get_unlearn_method("nosuch")
