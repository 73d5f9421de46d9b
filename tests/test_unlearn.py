import logging
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pruner
from dataset import ImageSet, TensorLoader
from models import model_dict
from unlearn.fisher import fisher_new, noise_mean_var
from unlearn.FT_prune import l1_weight
from unlearn.gradients import per_sample_gradients
from unlearn.wfisher import wfisher


class TinyNet(nn.Module):
    """Conv + batch norm + linear: every kind of layer the methods meet, small."""

    def __init__(self, classes=3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, classes)

    def forward(self, x):
        return self.fc(F.relu(self.bn1(self.conv1(x))).mean(dim=(2, 3)))


def loop_gradients(model, images, labels):
    """One backward pass per sample: the reference for the batched version."""
    model.eval()
    rows = []
    for x, y in zip(images, labels):
        loss = F.cross_entropy(model(x[None]), y[None])
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))]))
    return torch.stack(rows)


@pytest.mark.parametrize("sparse", [False, True])
def test_batched_per_sample_gradients_equal_one_backward_per_sample(sparse):
    torch.manual_seed(0)
    model = model_dict["resnet20s"](num_classes=10)
    if sparse:
        pruner.pruning_model(model, 0.9)
    # Batch-norm statistics of the data (as after training): with the initial ones the
    # activations blow up and float32 round-off alone differs by 1e-4 between methods.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, 3, 32, 32))
    images, labels = torch.rand(6, 3, 32, 32), torch.randint(0, 10, (6,))
    batched = per_sample_gradients(model, images, labels, chunk_size=4)
    loop = loop_gradients(model, images, labels)
    assert batched.shape == loop.shape
    assert float((batched - loop).norm() / loop.norm()) < 1e-5


def test_per_sample_gradients_stream_in_chunks_whatever_the_batch_size():
    """IU's memory is set by --iu_chunk_size: the stream never hands on more rows than a chunk."""
    from unlearn.gradients import retain_gradient_stream

    torch.manual_seed(0)
    model = TinyNet()
    data = tiny_data(23)
    whole = per_sample_gradients(model, data.images.float() / 255, data.labels, chunk_size=23)
    for batch_size in (4, 23):
        chunks = list(retain_gradient_stream(model, TensorLoader(data, batch_size=batch_size), chunk_size=3))
        assert max(len(c) for c in chunks) == 3
        torch.testing.assert_close(torch.cat(chunks), whole, rtol=1e-5, atol=1e-7)


def tiny_data(n, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ImageSet((torch.rand(n, 3, 8, 8, generator=g) * 255).to(torch.uint8), torch.randint(0, classes, (n,), generator=g))


def reference_iu(model, data, forget_idx, retain_idx, alpha, damping):
    """IU computed the plain way, one sample at a time (docs/algorithms.md §6)."""
    x = data.images.float() / 255
    grads_f = loop_gradients(model, x[forget_idx], data.labels[forget_idx])
    grads_r = loop_gradients(model, x[retain_idx], data.labels[retain_idx])
    n_f, n_r = len(forget_idx), len(retain_idx)
    v = grads_f.sum(0) / (n_f + n_r) - grads_r.sum(0) * n_f / ((n_f + n_r) * n_r)
    k, o = v.clone(), grads_r[0].clone()
    for i in range(1, min(n_r, damping + 2)):
        g = grads_r[i]
        t = o @ g
        k = k - (k @ g) / (damping + t) * o
        o = o - t / (damping + t) * o
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]) + alpha * k


@pytest.mark.parametrize("damping", [5, 1000])
def test_iu_update_equals_the_one_by_one_computation(damping):
    torch.manual_seed(1)
    model = TinyNet()
    pruner.pruning_model(model, 0.5)
    data = tiny_data(30)
    forget_idx, retain_idx = list(range(0, 30, 5)), [i for i in range(30) if i % 5]
    expected = reference_iu(model, data, forget_idx, retain_idx, alpha=3.0, damping=damping)
    loaders = {
        "forget": TensorLoader(data, forget_idx, batch_size=4, shuffle=True, seed=0),
        "retain": TensorLoader(data, retain_idx, batch_size=7, shuffle=True, seed=0),  # shuffled: IU must not care
    }
    wfisher(loaders, model, None, SimpleNamespace(alpha=3.0, iu_damping=damping, iu_chunk_size=3))
    got = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def ff_args(forget_class, alpha=0.0, ff_method="auto"):
    return SimpleNamespace(alpha=alpha, num_classes=3, forget_class=forget_class, ff_method=ff_method)


def test_ff_method_option_changes_rounding_only():
    weights = {}
    for method in ("loop", "grouped"):
        torch.manual_seed(0)
        model = TinyNet()
        fisher_new(
            {"retain": TensorLoader(tiny_data(40), batch_size=16)}, model, None, ff_args(forget_class=2, alpha=1e-4, ff_method=method)
        )
        weights[method] = model.state_dict()
    for key, value in weights["loop"].items():
        torch.testing.assert_close(weights["grouped"][key], value, rtol=1e-4, atol=1e-6, msg=key)


def test_ff_random_forgetting_zeroes_no_classifier_row():
    torch.manual_seed(0)
    model = TinyNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loaders = {"retain": TensorLoader(tiny_data(40), batch_size=16)}
    fisher_new(loaders, model, None, ff_args(forget_class=None, alpha=0.0))
    # alpha = 0: no noise anywhere, and no row singled out
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_ff_whole_class_forgetting_zeroes_that_row():
    torch.manual_seed(0)
    model = TinyNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fisher_new({"retain": TensorLoader(tiny_data(40), batch_size=16)}, model, None, ff_args(forget_class=2, alpha=0.0))
    after = model.state_dict()
    assert torch.equal(after["fc.weight"][:2], before["fc.weight"][:2])
    assert after["fc.weight"][2].abs().max() < 0.2 and not torch.equal(after["fc.weight"][2], before["fc.weight"][2])
    assert torch.equal(after["conv1.weight"], before["conv1.weight"])
    mean, var = noise_mean_var(model.fc.weight, torch.zeros_like(model.fc.weight), 1e-6, True, forget_class=2)
    assert torch.equal(mean[2], torch.zeros(4)) and torch.allclose(var[2], torch.full((4,), 1e-3))


def test_ff_noise_follows_the_recipe():
    param = torch.ones(3, 2, 1, 1)
    fisher = torch.tensor([1e-12, 1.0, 0.5, 0.25, 1e6, 1e6]).view(3, 2, 1, 1)
    mean, var = noise_mean_var(param, fisher, alpha=2.0, is_classifier=False)
    per_entry = 2.0 * (1.0 / (fisher + 1e-8)).clamp(max=1e3)
    torch.testing.assert_close(var, per_entry.mean(dim=1, keepdim=True).expand_as(param))
    bias_mean, bias_var = noise_mean_var(torch.ones(3), torch.ones(3), alpha=1.0, is_classifier=False)
    torch.testing.assert_close(bias_var, torch.full((3,), 10 * 1 / (1 + 1e-8)))


def test_l1_schedule():
    assert [l1_weight(e, 1.0, 4, 0) for e in range(4)] == [1.0, 0.75, 0.5, 0.25]
    assert [l1_weight(e, 1.0, 4, 2) for e in range(4)] == [1.0, 0.5, 0.0, 0.0]
    assert l1_weight(0, 0.3, 2, 2) == 0.3


def small_vgg():
    """VGG's layer kinds with ReLU(inplace=True) after batch norm and after the linear layers."""
    from models.vgg import VGG

    return VGG([4, "M", 512], num_classes=3)


@pytest.mark.parametrize("arch", ["tiny", "resnet20s", "vgg"])
def test_batched_and_grouped_fisher_equal_the_class_loop(arch, monkeypatch):
    import importlib

    ff = importlib.import_module("unlearn.gradients")
    torch.manual_seed(0)
    model = {"tiny": TinyNet, "resnet20s": lambda: model_dict["resnet20s"](num_classes=3), "vgg": small_vgg}[arch]()
    pruner.pruning_model(model, 0.5)
    with torch.no_grad():  # batch norm with statistics of its own, so that x_hat is not x
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    data = tiny_data(20) if arch == "tiny" else ImageSet(tiny_data(20).images.repeat(1, 1, 4, 4), tiny_data(20).labels)
    loader = TensorLoader(data, batch_size=8)
    loop = ff.fisher_diagonal(model, loader, 3, method="loop")
    assert all(torch.count_nonzero(f) for f in loop)
    runs = {
        "batched": ff.fisher_diagonal(model, loader, 3, method="batched"),
        "grouped": ff.fisher_diagonal(model, loader, 3, method="grouped"),
    }
    monkeypatch.setattr(ff, "MEASURED_CHOICES", {})
    runs["measured (each batch another method)"] = ff.fisher_diagonal(model, loader, 3, method="measured")
    monkeypatch.setattr(ff, "grouped_classes_per_pass", lambda model, images, num_classes: 2)  # classes 0-1, then 2
    runs["grouped, 2 classes per pass"] = ff.fisher_diagonal(model, loader, 3, method="grouped")
    for name, fisher in runs.items():
        for a, b in zip(loop, fisher, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}")


def test_fisher_method_checks_the_model_and_the_name():
    from unlearn.gradients import fisher_diagonal, grouped_layers

    assert grouped_layers(model_dict["resnet20s"](num_classes=3).eval()) is not None
    assert grouped_layers(model_dict["resnet20s"](num_classes=3).train()) is None  # batch statistics mix the copies
    assert grouped_layers(nn.Sequential(nn.Conv2d(3, 4, 3, groups=1), nn.LayerNorm(4))) is None
    loader = TensorLoader(tiny_data(8), batch_size=8)
    with pytest.raises(ValueError, match="grouped Fisher needs"):
        fisher_diagonal(nn.Sequential(nn.Flatten(), nn.LayerNorm(192), nn.Linear(192, 3)), loader, 3, method="grouped")
    with pytest.raises(ValueError, match="unknown Fisher method"):
        fisher_diagonal(TinyNet(), loader, 3, method="vmap")


def test_measured_fisher_keeps_the_fastest_method_after_one_timed_batch_each(monkeypatch, caplog):
    import importlib

    ff = importlib.import_module("unlearn.gradients")
    clock = [0.0]
    cost = {"grouped": 0.03, "batched": 0.01, "loop": 0.02}
    monkeypatch.setattr(ff.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(ff, "MEASURED_CHOICES", {})
    ran = []

    def work(method, images):
        ran.append(method)
        clock[0] += cost[method] * (5 if len(ran) <= 3 else 1)  # warm-up batches are slow, and not counted

    chooser = ff.FastestMethod(["grouped", "batched", "loop"], key="model")
    with caplog.at_level(logging.INFO, logger="unlearn_sparse"):
        for _ in range(9):
            chooser.run_batch(work, torch.zeros(2))
    assert ran == ["grouped", "batched", "loop"] * 2 + ["batched"] * 3
    assert "the rest use batched" in caplog.text
    again = []
    ff.FastestMethod(["grouped", "batched", "loop"], key="model").run_batch(lambda m, images: again.append(m), torch.zeros(2))
    assert again == ["batched"]  # remembered: no second trial
    only = []
    ff.FastestMethod(["loop"], key="other").run_batch(lambda m, images: only.append(m), torch.zeros(2))
    assert only == ["loop"]


class SharedLinear(nn.Module):
    """One Linear layer applied twice per forward pass (shared weights)."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(3, 3)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(192, 3))

    def forward(self, x):
        return self.inner(torch.tanh(self.inner(self.head(x))))


@pytest.mark.parametrize("kind", ["layer norm", "shared layer"])
def test_measured_fisher_leaves_out_grouped_where_the_layers_do_not_allow_it(kind, monkeypatch, caplog):
    import importlib

    ff = importlib.import_module("unlearn.gradients")
    monkeypatch.setattr(ff, "MEASURED_CHOICES", {})
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.LayerNorm(192), nn.Linear(192, 3)) if kind == "layer norm" else SharedLinear()
    loader = TensorLoader(tiny_data(40), batch_size=8)
    if kind == "shared layer":
        with pytest.raises(ValueError, match="each layer to run once"):
            ff.fisher_diagonal(model, loader, 3, method="grouped")
    with caplog.at_level(logging.INFO, logger="unlearn_sparse"):
        measured = ff.fisher_diagonal(model, loader, 3, method="measured")
    assert set(ff.MEASURED_CHOICES.values()) <= {"batched", "loop"}
    assert ("grouped is left out" in caplog.text) == (kind == "shared layer")
    for a, b in zip(ff.fisher_diagonal(model, loader, 3, method="loop"), measured, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-12)


def test_iu_chunk_size_follows_the_free_memory(monkeypatch):
    import importlib

    wf = importlib.import_module("unlearn.gradients")

    model = model_dict["resnet20s"](num_classes=10)
    per_sample = 2 * 4 * sum(p.numel() for p in model.parameters())
    monkeypatch.setattr(wf, "free_memory_bytes", lambda device: 40 * per_sample)
    assert wf.default_chunk_size(model) == 10  # a quarter of the free memory
    monkeypatch.setattr(wf, "free_memory_bytes", lambda device: 10**15)
    assert wf.default_chunk_size(model) == wf.MAX_CHUNK
    monkeypatch.setattr(wf, "free_memory_bytes", lambda device: 1)
    assert wf.default_chunk_size(model) == 1
