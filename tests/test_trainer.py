"""--amp, --channels_last and --compile change speed, not results (within tolerance)."""

from types import SimpleNamespace

import pytest
import torch

import pruner
from dataset import TensorLoader
from tests.test_unlearn import TinyNet, tiny_data
from trainer import apply_speed_options, make_optimizer, predict, train_epoch


def trained(options, amp=False, channels_last=False):
    torch.manual_seed(0)
    model = TinyNet()
    pruner.pruning_model(model, 0.5)
    apply_speed_options(model, SimpleNamespace(**options))
    loader = TensorLoader(tiny_data(64), batch_size=16, shuffle=True, seed=0)
    optimizer = make_optimizer(model, 0.05, 0.9, 5e-4)
    for epoch in range(2):
        train_epoch(model, loader, optimizer, torch.device("cpu"), epoch=epoch, amp=amp, channels_last=channels_last)
    return model, loader.in_order()  # evaluate in a fixed order


def test_channels_last_gives_the_same_training():
    reference, loader = trained({})
    model, _ = trained({"channels_last": True}, channels_last=True)
    torch.testing.assert_close(predict(model, loader)[0], predict(reference, loader)[0], rtol=1e-4, atol=1e-5)


def test_amp_gives_nearly_the_same_training():
    reference, loader = trained({})
    model, _ = trained({}, amp=True)
    ref_logits, got_logits = predict(reference, loader)[0], predict(model, loader)[0]
    torch.testing.assert_close(got_logits, ref_logits, rtol=0.05, atol=0.05)
    assert (got_logits.argmax(1) == ref_logits.argmax(1)).float().mean() >= 0.9


@pytest.mark.slow
def test_compile_gives_the_same_outputs_and_state_dict_keys():
    torch.manual_seed(0)
    model = TinyNet()
    pruner.pruning_model(model, 0.5)
    compiled = apply_speed_options(pruner.clone_model(model), SimpleNamespace(compile=True))
    x = torch.rand(4, 3, 8, 8)
    model.eval(), compiled.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-6)
    assert compiled.state_dict().keys() == model.state_dict().keys()


def test_evaluation_runs_the_model_with_its_speed_options():
    """predict and evaluate honour --amp (bfloat16 autocast) and --channels_last, as training does;
    without them the logits are exactly the plain forward pass's."""
    from trainer import evaluate

    torch.manual_seed(0)
    plain = TinyNet()
    loader = TensorLoader(tiny_data(20), batch_size=8)
    images = torch.cat([x for x, _ in loader])
    with torch.no_grad():
        assert torch.equal(predict(apply_speed_options(plain, SimpleNamespace()), loader)[0], plain.eval()(images))
    fast = apply_speed_options(pruner.clone_model(plain), SimpleNamespace(amp=True, channels_last=True))
    seen = []
    conv = next(m for m in fast.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, inputs, out: seen.append((out.dtype, inputs[0].is_contiguous(memory_format=torch.channels_last))))
    logits = predict(fast, loader)[0]
    evaluate(fast, loader)
    assert seen and all(dtype == torch.bfloat16 and channels_last for dtype, channels_last in seen)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, predict(plain, loader)[0], rtol=0.05, atol=0.05)
