"""Where a process runs and which backend it joins with (utils.pick_device, utils.get_device),
with the CUDA queries faked: the choice must fit the process, not what happens to be visible."""

import pytest
import torch

import distributed
import utils
from errors import UserError
from utils import pick_device


def cuda(index):
    return torch.device("cuda", index)


@pytest.mark.parametrize(
    "requested,gpu,launched,local_rank,cuda_count,mps,expected",
    [
        ("auto", 0, False, 0, 0, False, torch.device("cpu")),  # nothing visible: the CPU
        ("auto", 0, False, 0, 0, True, torch.device("mps")),
        ("auto", 0, False, 0, 2, True, cuda(0)),  # CUDA before MPS
        ("auto", 1, False, 0, 2, False, cuda(1)),  # --gpu 1 in a single process
        ("cpu", 1, False, 0, 4, False, torch.device("cpu")),  # --device cpu beside visible GPUs
        ("cpu", 0, True, 3, 4, False, torch.device("cpu")),  # ... also under torchrun
        ("auto", 0, True, 2, 4, False, cuda(2)),  # torchrun: the GPU of LOCAL_RANK
        ("auto", 3, True, 2, 4, False, cuda(2)),  # ... whatever --gpu says
        ("auto", 0, True, 3, 1, False, cuda(0)),  # a Slurm task that sees only its own GPU, at LOCAL_RANK 3
        ("cuda", 0, True, 0, 1, False, cuda(0)),
    ],
)
def test_the_device_fits_the_process(requested, gpu, launched, local_rank, cuda_count, mps, expected):
    got = pick_device(requested, gpu, launched=launched, local_rank=local_rank, cuda_count=cuda_count, mps=mps)
    assert got == expected


@pytest.mark.parametrize(
    "requested,gpu,launched,local_rank,cuda_count,mps,message",
    [
        ("auto", 2, False, 0, 2, False, "--gpu 2: this process sees 2 CUDA device(s), numbered 0 to 1"),
        ("auto", -1, False, 0, 2, False, "--gpu -1"),
        ("cuda", 0, False, 0, 0, False, "--device cuda: no CUDA device is visible"),
        ("mps", 0, False, 0, 2, False, "--device mps: Apple's MPS is not available"),
        ("auto", 0, True, 2, 2, False, "process 2 on this node, but it sees 2 GPUs"),
        ("tpu", 0, False, 0, 0, False, "--device tpu: choose one of auto, cuda, mps, cpu"),
    ],
)
def test_a_device_that_cannot_be_had_is_one_clear_error(requested, gpu, launched, local_rank, cuda_count, mps, message):
    with pytest.raises(UserError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        pick_device(requested, gpu, launched=launched, local_rank=local_rank, cuda_count=cuda_count, mps=mps)


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch reports `count` CUDA devices; set_device and the process group are recorded, not run."""
    calls = {"set_device": [], "init": []}

    def fake(count, launched=False, local_rank=0):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls["set_device"].append(device))
        monkeypatch.setattr(distributed, "launched", lambda: launched)
        monkeypatch.setattr(distributed, "local_rank", lambda: local_rank)
        monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
        record = lambda backend, **kw: calls["init"].append((backend, kw.get("device_id")))  # noqa: E731
        monkeypatch.setattr(distributed.dist, "init_process_group", record)
        return calls

    return fake


def test_gpu_n_becomes_the_current_device(fake_cuda):
    calls = fake_cuda(4)
    assert utils.get_device(gpu=2) == cuda(2)
    assert calls["set_device"] == [cuda(2)] and calls["init"] == []  # one process: no group


def test_under_torchrun_the_backend_follows_the_device_not_what_is_visible(fake_cuda):
    calls = fake_cuda(1, launched=True, local_rank=1)
    assert utils.get_device(requested="cpu") == torch.device("cpu")
    assert calls["init"] == [("gloo", None)] and calls["set_device"] == []
    calls = fake_cuda(1, launched=True, local_rank=1)
    calls["init"].clear()
    assert utils.get_device() == cuda(0)  # the one GPU this task sees, at LOCAL_RANK 1
    assert calls["init"] == [("nccl", cuda(0))] and calls["set_device"] == [cuda(0)]


def test_cudnn_stays_deterministic_unless_benchmark_is_asked_for(fake_cuda):
    fake_cuda(0)
    try:
        utils.get_device(cudnn_benchmark=True)
        utils.setup_seed(1)
        assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
        utils.get_device()
        utils.setup_seed(1)
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
