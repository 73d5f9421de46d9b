"""The methods that came after the paper, replayed by hand from their sources, step by step.

Each test rebuilds what SalUn's, SCRUB's or the boundary methods' code computes (the
loops written out here, not taken from unlearn/) and compares the weights bit for bit or
to float rounding; each also checks that the plausible wrong versions (the regression a
refactoring could bring) give other weights on the same model, so the test would notice.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import arg_parser
from dataset import Augment, TensorLoader
from paths import saliency_mask_path
from pruner import clone_model
from tests.test_unlearn import tiny_data
from tests.test_unlearn_api import FORGET, RETAIN, pruned_tiny_net, run_method

N = 40


def args_for(method, *options):
    args = arg_parser.parse_args(["--unlearn", method, "--decreasing_lr", "100", *options])
    args.num_classes, args.forget_class = 3, None
    return args


def loaders(data, batch_size=8, augment=None, shuffle=False):
    made = {
        name: TensorLoader(data, idx, batch_size, shuffle=shuffle, augment=augment, seed=3)
        for name, idx in (("retain", RETAIN), ("forget", FORGET))
    }
    return {**made, "val": made["forget"], "test": made["forget"]}


def batches(data, positions, batch_size):
    """The batches an unshuffled, unaugmented loader gives (images as floats in [0, 1])."""
    return list(TensorLoader(data, positions, batch_size))


def sgd_replay(model, steps, args):
    """Plain SGD(lr, momentum, weight decay) over `steps`: callables loss(model) -> scalar, one step each, train mode."""
    optimizer = torch.optim.SGD(model.parameters(), lr=args.unlearn_lr, momentum=args.momentum, weight_decay=args.weight_decay)
    model.train()
    for loss_of in steps:
        loss = loss_of(model)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def differs(a, b):
    return any(not torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)


# ---------------------------------------------------------------- SalUn's saliency mask


def saliency_by_hand(model, batch_list, ratio, *, mode="eval", signed=False, per_layer=False):
    """SalUn's generate_mask.py: |gradient of the batch-mean CE summed over the forget batches| in eval mode, global top share."""
    model = clone_model(model)
    model.train(mode == "train")
    params = dict(model.named_parameters())
    total = {name: torch.zeros_like(p) for name, p in params.items()}
    for images, labels in batch_list:
        grads = torch.autograd.grad(F.cross_entropy(model(images), labels), list(params.values()))
        for name, g in zip(params, grads):
            total[name] += g
    buffers = dict(model.named_buffers())
    alive = {name: buffers.get(name.replace("_orig", "_mask"), torch.ones_like(p)).bool() for name, p in params.items()}
    score = {name: (t if signed else t.abs()).masked_fill(~alive[name], -float("inf")) for name, t in total.items()}
    if per_layer:
        return {name.removesuffix("_orig"): _top(s.flatten(), int(int(alive[name].sum()) * ratio)).view_as(s) for name, s in score.items()}
    flat = torch.cat([s.flatten() for s in score.values()])
    keep = _top(flat, int(sum(int(a.sum()) for a in alive.values()) * ratio))
    sizes = [s.numel() for s in score.values()]
    return {name.removesuffix("_orig"): part.view_as(score[name]) for name, part in zip(score, keep.split(sizes))}


def _top(scores, k):
    keep = torch.zeros(len(scores), dtype=torch.uint8)
    keep[torch.argsort(scores, descending=True, stable=True)[:k]] = 1
    return keep


@pytest.mark.parametrize("amount", [0.0, 0.5])
def test_salun_mask_is_the_global_top_share_of_absolute_forget_gradients_in_eval_mode(amount, tmp_path):
    data, ratio = tiny_data(N), 0.3
    model = pruned_tiny_net(amount=amount, seed=4)
    with torch.no_grad():  # batch statistics unlike the running ones, so that eval and train mode differ
        model.bn1.running_mean.fill_(0.3)
        model.bn1.running_var.fill_(2.0)
    expected = saliency_by_hand(model, batches(data, FORGET, 8), ratio)
    args = args_for("SalUn", "--unlearn_epochs", "1", "--salun_ratio", str(ratio), "--save_dir", str(tmp_path))
    run_method("SalUn", loaders(data), args, model)
    made = torch.load(saliency_mask_path(tmp_path, ratio), weights_only=True)
    assert made.keys() == expected.keys()
    for name in expected:
        assert torch.equal(made[name].to(torch.uint8), expected[name]), name
    wrong = {
        "from the retain set": saliency_by_hand(model, batches(data, RETAIN, 8), ratio),
        "signed": saliency_by_hand(model, batches(data, FORGET, 8), ratio, signed=True),
        "train mode": saliency_by_hand(model, batches(data, FORGET, 8), ratio, mode="train"),
        "per layer": saliency_by_hand(model, batches(data, FORGET, 8), ratio, per_layer=True),
        "random": {
            n: (torch.rand(m.shape, generator=torch.Generator().manual_seed(0)) < ratio).to(torch.uint8) for n, m in expected.items()
        },
    }
    for why, other in wrong.items():
        assert any(not torch.equal(other[n], expected[n]) for n in expected), f"a mask {why} would pass unnoticed"


def test_salun_reports_the_saliency_masks_time_beside_its_rte(tmp_path):
    args = args_for("SalUn", "--unlearn_epochs", "1", "--save_dir", str(tmp_path))
    run_method("SalUn", loaders(tiny_data(N)), args, pruned_tiny_net())
    assert args.saliency_mask_seconds > 0


# ---------------------------------------------------------------- SCRUB


def kl(student_logits, teacher_logits, t):
    p_t = F.softmax(teacher_logits / t, dim=1)
    return (p_t * (p_t.log() - F.log_softmax(student_logits / t, dim=1))).sum() * t * t / len(student_logits)


def scrub_by_hand(model, data, args, *, max_sign=-1.0, swap=False, min_first=False, forget_batch=None):
    """SCRUB's train_distill loop: for epochs < msteps a max pass over the forget set (loss -KL), then a min pass
    over the retain set (gamma * CE + alpha * KL); one SGD optimizer; no augmentation."""
    student, teacher = clone_model(model), clone_model(model).eval()
    gamma, alpha = (args.scrub_alpha, args.scrub_gamma) if swap else (args.scrub_gamma, args.scrub_alpha)

    def max_step(images, labels):
        return lambda m: max_sign * kl(m(images), teacher(images).detach(), args.kd_T)

    def min_step(images, labels):
        def loss(m):
            logits = m(images)
            return gamma * F.cross_entropy(logits, labels) + alpha * kl(logits, teacher(images).detach(), args.kd_T)

        return loss

    steps = []
    for epoch in range(args.unlearn_epochs):
        max_pass = [max_step(*b) for b in batches(data, FORGET, forget_batch or args.forget_batch_size)] if epoch < args.msteps else []
        min_pass = [min_step(*b) for b in batches(data, RETAIN, args.batch_size)]
        steps += min_pass + max_pass if min_first else max_pass + min_pass
    return sgd_replay(student, steps, args).state_dict()


def test_scrub_is_its_sources_loop_with_its_batch_sizes_and_no_augmentation():
    data = tiny_data(N)
    options = ("--unlearn_epochs", "3", "--msteps", "2", "--unlearn_lr", "0.05", "--scrub_gamma", "0.8", "--scrub_alpha", "0.3")
    args = args_for("SCRUB", *options, "--forget_batch_size", "4", "--batch_size", "8")
    model = pruned_tiny_net(seed=5)
    expected = scrub_by_hand(model, data, args)
    # The method gets augmented loaders in batches of another size, as main_forget.py gives them.
    got = run_method("SCRUB", loaders(data, batch_size=6, augment=Augment(8, 1)), args, clone_model(model)).state_dict()
    assert_same(got, expected)
    wrong = {
        "+KL in the max step": scrub_by_hand(model, data, args, max_sign=1.0),
        "gamma and alpha swapped": scrub_by_hand(model, data, args, swap=True),
        "min before max": scrub_by_hand(model, data, args, min_first=True),
        "another forget batch size": scrub_by_hand(model, data, args, forget_batch=8),
    }
    for why, other in wrong.items():
        assert differs(other, expected), f"SCRUB with {why} would pass unnoticed"


def test_scrub_defaults_are_what_its_notebook_ran():
    args = arg_parser.parse_args(["--unlearn", "SCRUB"])
    # large_scale_unlearning.ipynb: cell 28 (forget 512, retain 256), cell 32 (the rest)
    assert (args.forget_batch_size, args.batch_size) == (512, 256)
    assert (args.unlearn_lr, args.unlearn_epochs, args.msteps, args.kd_T) == (5e-4, 3, 2, 4.0)
    assert (args.scrub_gamma, args.scrub_alpha, args.momentum, args.weight_decay) == (0.99, 0.001, 0.9, 5e-4)


# ---------------------------------------------------------------- boundary shrink and expanding


def fgsm_by_hand(model, images, labels, bound=0.1):
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), labels), x)
    return torch.round((images + bound * grad.sign()).clamp(0, 1) * 255) / 255


def shrink_by_hand(model, data, args, *, attack="frozen", positions=FORGET):
    """Boundary shrink (SalUn's boundary_ex.py / the paper): each forget batch relabelled with the prediction of a frozen
    copy (eval mode) on its FGSM image, then CE on the new labels."""
    student = clone_model(model)
    frozen = clone_model(model).eval()
    if attack == "frozen in train mode":
        frozen.train()

    def step(images, labels):
        def loss(m):
            attacker = m if attack == "live" else frozen
            adversarial = fgsm_by_hand(attacker, images, labels)
            with torch.no_grad():
                new = attacker(adversarial).argmax(dim=1)
            if attack == "live":
                m.train()
            return F.cross_entropy(m(images), new)

        return loss

    steps = [step(*b) for _ in range(args.unlearn_epochs) for b in batches(data, positions, args.batch_size)]
    return sgd_replay(student, steps, args).state_dict()


def fitted_tiny_net():
    """A tiny net fitted a little to the data, so that the FGSM step changes some predictions."""
    model = pruned_tiny_net(amount=0, seed=6)
    data = tiny_data(N)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(60):
        optimizer.zero_grad()
        F.cross_entropy(model(data.images.float() / 255), data.labels).backward()
        optimizer.step()
    return model


def test_boundary_shrink_attacks_a_frozen_copy_in_eval_mode_and_trains_the_forget_set_only():
    data = tiny_data(N)
    args = args_for("boundary_shrink", "--unlearn_epochs", "2", "--unlearn_lr", "0.2", "--batch_size", "4")
    model = fitted_tiny_net()
    expected = shrink_by_hand(model, data, args)
    got = run_method("boundary_shrink", loaders(data, batch_size=4), args, clone_model(model)).state_dict()
    assert_same(got, expected)
    wrong = {
        "the attack on the live model": shrink_by_hand(model, data, args, attack="live"),
        "the frozen copy in train mode": shrink_by_hand(model, data, args, attack="frozen in train mode"),
        "training on the retain set": shrink_by_hand(model, data, args, positions=RETAIN),
    }
    for why, other in wrong.items():
        assert differs(other, expected), f"boundary shrink with {why} would pass unnoticed"


def expand_by_hand(model, data, args, *, target="new", positions=FORGET, seed=1):
    """Boundary expanding: the classifier gains one output (new weights drawn after seeding), the forget set trains
    into it, then the extra output is dropped."""
    student = clone_model(model)
    old = student.fc
    torch.manual_seed(seed)  # the method is seeded with --seed before it runs (run_method: 1)
    new = nn.Linear(old.in_features, old.out_features + 1)
    with torch.no_grad():
        new.weight[:-1], new.bias[:-1] = old.weight, old.bias
    student.fc = new
    c = old.out_features

    def step(images, labels):
        wanted = torch.full_like(labels, c) if target == "new" else torch.zeros_like(labels)
        return lambda m: F.cross_entropy(m(images), wanted)

    steps = [step(*b) for _ in range(args.unlearn_epochs) for b in batches(data, positions, args.batch_size)]
    sgd_replay(student, steps, args)
    with torch.no_grad():
        shrunk = nn.Linear(new.in_features, c)
        shrunk.weight.copy_(new.weight[:c])
        shrunk.bias.copy_(new.bias[:c])
    student.fc = shrunk
    return student.state_dict()


def test_boundary_expanding_trains_the_forget_set_into_the_new_class_and_drops_it():
    data = tiny_data(N)
    args = args_for("boundary_expanding", "--unlearn_epochs", "2", "--unlearn_lr", "0.2", "--batch_size", "4")
    model = pruned_tiny_net(seed=7)
    expected = expand_by_hand(model, data, args)
    got = run_method("boundary_expanding", loaders(data, batch_size=4), args, clone_model(model)).state_dict()
    assert_same(got, expected)
    wrong = {
        "another target than the new class": expand_by_hand(model, data, args, target="class 0"),
        "training on the retain set": expand_by_hand(model, data, args, positions=RETAIN),
    }
    for why, other in wrong.items():
        assert differs(other, expected), f"boundary expanding with {why} would pass unnoticed"


# ---------------------------------------------------------------- NegGrad+


def neggrad_by_hand(model, data, args, *, retain_batch=8, forget_sign=-1.0, swap=False, forget_batch=None, one_forward=False):
    """SCRUB's train_negrad: zip(retain batches, cycle(forget batches)), loss beta * CE_r - (1 - beta) * CE_f, plain SGD, train mode."""
    import itertools

    retain = batches(data, RETAIN, retain_batch)
    forget = batches(data, FORGET, forget_batch or args.neggrad_forget_batch_size)
    beta = 1 - args.neggrad_beta if swap else args.neggrad_beta

    def step(x, y, fx, fy):
        def loss(m):
            if one_forward:  # both batches through batch norm together
                logits = m(torch.cat([x, fx]))
                out, forget_out = logits[: len(x)], logits[len(x) :]
            else:
                out, forget_out = m(x), m(fx)
            return beta * F.cross_entropy(out, y) + forget_sign * (1 - beta) * F.cross_entropy(forget_out, fy)

        return loss

    steps = [step(x, y, fx, fy) for _ in range(args.unlearn_epochs) for (x, y), (fx, fy) in zip(retain, itertools.cycle(forget))]
    return sgd_replay(clone_model(model), steps, args).state_dict()


def test_neggrad_plus_is_its_sources_loop_paired_batches_and_signs():
    data = tiny_data(N)
    # 30 retain images in batches of 8 (4 batches) paired with 10 forget images in batches of 3 (4 batches);
    # beta far from 1, so that the forget term shows.
    args = args_for("NegGrad_plus", "--unlearn_epochs", "2", "--unlearn_lr", "0.05", "--neggrad_beta", "0.6",
                    "--neggrad_forget_batch_size", "3")  # fmt: skip
    model = pruned_tiny_net(seed=7)
    expected = neggrad_by_hand(model, data, args)
    got = run_method("NegGrad_plus", loaders(data, batch_size=8), args, clone_model(model)).state_dict()
    assert_same(got, expected)
    wrong = {
        "the forget term's sign flipped": neggrad_by_hand(model, data, args, forget_sign=+1.0),
        "beta and 1 - beta swapped": neggrad_by_hand(model, data, args, swap=True),
        "the forget set in batches of --batch_size": neggrad_by_hand(model, data, args, forget_batch=8),
        "one forward pass over both batches": neggrad_by_hand(model, data, args, one_forward=True),
    }
    for why, other in wrong.items():
        assert differs(other, expected), f"NegGrad+ with {why} would pass unnoticed"


def test_neggrad_plus_cycles_a_small_forget_set_as_often_as_the_retain_set_needs():
    data = tiny_data(N)  # one forget batch of 10, paired with each of the 4 retain batches
    args = args_for(
        "NegGrad_plus", "--unlearn_epochs", "1", "--unlearn_lr", "0.05", "--neggrad_beta", "0.5", "--neggrad_forget_batch_size", "10"
    )  # fmt: skip  (one forget batch, reused for each of 4 retain batches)
    model = pruned_tiny_net(seed=3)
    got = run_method("NegGrad_plus", loaders(data, batch_size=8), args, clone_model(model)).state_dict()
    assert_same(got, neggrad_by_hand(model, data, args))


def test_neggrad_plus_defaults_are_what_scrubs_cifar10_run_used():
    args = arg_parser.parse_args(["--unlearn", "NegGrad_plus"])
    # MIA_experiments.ipynb cell 22 (ng_alpha, ng_epochs, ng_lr, forget_bs) and cell 16 (plain SGD, no weight decay)
    assert (args.neggrad_beta, args.unlearn_epochs, args.unlearn_lr, args.neggrad_forget_batch_size) == (0.9999, 5, 0.01, 16)
    assert (args.momentum, args.weight_decay) == (0.0, 0.0)
