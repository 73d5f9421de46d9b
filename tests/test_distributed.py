"""One run over several processes (distributed.py): 2 ranks under torchrun with the gloo backend
on the CPU give what one process gives with the same global batch.

The training comparison keeps batch norm in eval mode: PyTorch's synchronised batch norm
(--sync_bn) runs on GPUs only, and unsynchronised batch statistics differ by design.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT

TOLERANCE = 1e-5  # float rounding: the ranks' sums are added in another order


def torchrun(*args, nproc=2, env_extra=None, **kwargs):
    """`torchrun --standalone --nproc_per_node 2 ARGS` as a subprocess (one thread per rank)."""
    # faulthandler: a rank that aborts inside C++ still prints where its Python code was
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1", **(env_extra or {}))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def worker_results(tmp_path_factory):
    """tests/ddp_worker.py's results alone and with 2 ranks."""
    one, two = tmp_path_factory.mktemp("one_rank"), tmp_path_factory.mktemp("two_ranks")
    alone = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tests", "ddp_worker.py"), one],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600,
    )  # fmt: skip
    assert alone.returncode == 0, alone.stderr
    # torch reports one CUDA device to the ranks: a run on the CPU must still join with gloo
    ranks = torchrun("tests/ddp_worker.py", two, env_extra={"FAKE_CUDA_DEVICES": "1"})
    assert ranks.returncode == 0, ranks.stderr
    load = lambda folder: torch.load(folder / "results.pt", weights_only=True)  # noqa: E731
    return load(one), load(two), two


def max_difference(a, b):
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_the_worker_ran_with_one_and_with_two_ranks(worker_results):
    one, two, _ = worker_results
    assert (one["world"], two["world"]) == (1, 2)


def test_two_ranks_on_the_cpu_join_with_gloo_though_cuda_reports_a_device(worker_results):
    _, two, _ = worker_results
    assert (two["backend"], two["device"]) == ("gloo", "cpu")


def test_training_with_two_ranks_equals_one_process_with_the_same_global_batch(worker_results):
    one, two, _ = worker_results
    assert max_difference(one["train"], two["train"]) < TOLERANCE
    # the comparison means something: training moved the weights far more than the tolerance
    assert max_difference(one["train"], one["initial"]) > 1000 * TOLERANCE
    for (loss_1, acc_1), (loss_2, acc_2) in zip(one["train_stats"], two["train_stats"]):
        # the weights differ by rounding: an image whose two best logits nearly tie may flip (2 of 203 allowed)
        assert loss_1 == pytest.approx(loss_2, rel=1e-5) and abs(acc_1 - acc_2) <= 100 * 2 / 203 + 1e-9
    assert two["train_mask_kept"], "pruned weights stay zero under DistributedDataParallel"


def test_the_masks_are_not_broadcast_before_each_forward_pass(worker_results):
    _, two, _ = worker_results
    buffers = two["broadcast_buffers"]
    assert "features.1.running_mean" in buffers  # batch norm's statistics still are
    assert not [name for name in buffers if name.endswith("weight_mask")]


def test_random_labels_are_drawn_for_the_global_batch(worker_results):
    one, two, _ = worker_results
    assert max_difference(one["rl"], two["rl"]) < TOLERANCE
    assert max_difference(one["rl"], one["train"]) > 1000 * TOLERANCE


def test_a_block_of_batches_is_augmented_as_in_a_full_pass(digits):
    """FF, IU and SalUn sum over blocks of an augmented in-order loader: each block must see the crops a full pass gives."""
    from dataset import TensorLoader

    loader = TensorLoader(digits.train, torch.arange(100), batch_size=16, augment=digits.augment, seed=3)
    full = torch.cat([images for images, _ in TensorLoader(digits.train, torch.arange(100), batch_size=16, augment=digits.augment, seed=3)])
    blocks = torch.cat([images for start, stop in ((0, 3), (3, 5), (5, 7)) for images, _ in loader.batch_block(start, stop)])
    assert torch.equal(full, blocks)


def test_inference_gathers_every_logit_in_order(worker_results):
    one, two, _ = worker_results
    assert torch.equal(one["predict"][1], two["predict"][1]) and len(two["predict"][1]) == 77
    assert (one["predict"][0] - two["predict"][0]).abs().max() < TOLERANCE


def test_ff_and_iu_give_the_same_update_with_one_and_two_ranks(worker_results):
    one, two, _ = worker_results
    for f1, f2 in zip(one["fisher"], two["fisher"]):
        assert torch.allclose(f1, f2, rtol=1e-4, atol=1e-9)
    iu_step_one = {k: one["iu"][k] - one["train"][k] for k in one["iu"]}
    iu_step_two = {k: two["iu"][k] - two["train"][k] for k in two["iu"]}
    assert max(v.abs().max().item() for v in iu_step_one.values()) > 1000 * TOLERANCE
    assert max_difference(iu_step_one, iu_step_two) < TOLERANCE


def test_accuracy_is_counted_over_every_rank(worker_results):
    one, two, _ = worker_results
    for alone_or_not in (one, two):  # bit for bit what the mean of the hits over the gathered logits gives
        logits, labels = alone_or_not["predict"]
        assert alone_or_not["evaluate"] == 100.0 * (logits.argmax(1) == labels).float().mean().item()
    # The two models differ by rounding: only images whose two best logits are closer than the
    # logits' difference can change their prediction.
    (logits_one, labels), (logits_two, _) = one["predict"], two["predict"]
    top2 = logits_one.topk(2, dim=1).values
    ambiguous = int(((top2[:, 0] - top2[:, 1]) <= 2 * (logits_one - logits_two).abs().max()).sum())
    assert abs(one["evaluate"] - two["evaluate"]) * len(labels) / 100 <= ambiguous + 1e-6


def test_a_write_that_fails_on_rank_0_stops_every_rank(worker_results):
    one, two, _ = worker_results
    assert one["failed_write"].tolist() == [1]
    assert two["failed_write"].tolist() == [1, 2]  # rank 0 its own error; rank 1 told, not left waiting


def test_only_rank_0_writes(worker_results):
    _, _, folder = worker_results
    with open(folder / "who_wrote.json") as f:
        assert json.load(f) == {"rank": 0}
    assert sorted(os.listdir(folder)) == ["results.pt", "who_wrote.json"]


IMP = ["main_imp.py", "--dataset", "digits", "--arch", "resnet20s", "--train_per_class", "40", "--batch_size", "32"]
IMP += ["--epochs", "3", "--decreasing_lr", "2", "--pruning_times", "2", "--rewind_epoch", "1", "--checkpoint_every_s", "0"]


@pytest.mark.slow
def test_a_two_rank_run_killed_and_resumed_ends_as_one_that_was_not(tmp_path):
    whole = torchrun(*IMP, "--save_dir", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr

    # faulthandler: a rank that aborts inside C++ still prints where its Python code was
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *map(str, IMP)]
    run = subprocess.Popen([*command, "--save_dir", tmp_path / "killed"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    first_state_done = tmp_path / "killed" / "1checkpoint.pth.tar"
    deadline = time.time() + 300
    while not first_state_done.exists() and run.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    run.send_signal(signal.SIGTERM)
    stderr = run.communicate(timeout=120)[1]
    assert run.returncode != 0 and "rerun the same command with --resume" in stderr, stderr
    assert (
        not (tmp_path / "killed" / "imp_summary.json").exists()
        or len(json.load(open(tmp_path / "killed" / "imp_summary.json"))["states"]) < 2
    )

    resumed = torchrun(*IMP, "--save_dir", tmp_path / "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    for name in ("0model_SA_best.pth.tar", "1checkpoint.pth.tar"):
        a = torch.load(tmp_path / "whole" / name, weights_only=True)["state_dict"]
        b = torch.load(tmp_path / "killed" / name, weights_only=True)["state_dict"]
        assert max_difference(a, b) < TOLERANCE, name


@pytest.mark.slow
def test_a_bad_data_folder_gives_one_line_on_every_rank(tmp_path):
    logs = tmp_path / "logs"
    bad = torchrun(
        "--log-dir", logs, "--redirects", "2", "main_imp.py", "--dataset", "imagenet", "--data", tmp_path / "nowhere",
        "--arch", "resnet18", "--save_dir", tmp_path / "out",
    )  # fmt: skip
    assert bad.returncode != 0
    errors = sorted(p for p in logs.rglob("stderr.log"))
    assert len(errors) == 2
    for path in errors:
        lines = path.read_text().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "train/<wnid>" in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_a_single_process_is_left_alone():
    """Without torchrun nothing joins a process group: the ordinary scripts' path."""
    import distributed

    assert not distributed.launched() or os.environ.get("WORLD_SIZE") == "1"
    assert distributed.world_size() == 1 and distributed.is_main()


def test_sync_bn_is_refused_on_the_cpu_under_torchrun_and_ignored_outside_it(monkeypatch):
    """--sync_bn under torchrun: one clear error on the CPU; outside torchrun it changes nothing."""
    import argparse

    import distributed
    import trainer
    from errors import UserError

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    args = argparse.Namespace(sync_bn=True)
    assert trainer.apply_speed_options(model, args)[1].__class__ is torch.nn.BatchNorm2d
    monkeypatch.setattr(distributed, "active", lambda: True)
    with pytest.raises(UserError, match="GPUs only"):
        trainer.apply_speed_options(model, args)
