"""Run by tests/test_distributed.py, once alone and once under `torchrun --nproc_per_node 2`:
the same computations, whose results rank 0 (or the lone process) saves to OUT/results.pt.

    python tests/ddp_worker.py OUT

With FAKE_CUDA_DEVICES=N in the environment, torch reports N CUDA devices (none is used):
the run asks for the CPU, so its process group must be gloo whatever CUDA shows.
"""

import os
import sys

import torch

import distributed
import pruner
from checkpoints import atomic_path, atomic_save_json, atomic_torch_save
from dataset import TensorLoader, in_order, load_digits_splits
from trainer import evaluate, make_optimizer, predict, train_epoch
from unlearn.gradients import fisher_diagonal
from unlearn.RL import random_labels
from unlearn.wfisher import wfisher
from utils import get_device


class SmallNet(torch.nn.Module):
    """Two pruned convolutions with batch norm kept in eval mode while training (no batch statistics to share)."""

    def __init__(self, splits):
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, stride=2), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, stride=2), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        )  # fmt: skip
        self.fc = torch.nn.Linear(32, 10)
        pruner.apply_mask(self, pruner.random_mask(self, None, 0.5, torch.Generator().manual_seed(0)))
        for module in self.modules():  # the frozen layers hold the data's statistics
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None
        super().train()
        with torch.no_grad():
            for images, _ in TensorLoader(splits.train, batch_size=256):
                self(images)

    def train(self, mode=True):
        super().train(mode)
        for module in self.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
        return self

    def forward(self, x):
        return self.fc(self.features(x))


def main(out):
    torch.set_num_threads(1)
    if "FAKE_CUDA_DEVICES" in os.environ:
        count = int(os.environ["FAKE_CUDA_DEVICES"])
        torch.cuda.is_available = lambda: count > 0
        torch.cuda.device_count = lambda: count
    device = get_device(requested="cpu")
    splits = load_digits_splits()
    results = {"world": distributed.world_size(), "device": str(device)}
    results["backend"] = torch.distributed.get_backend() if distributed.active() else None

    # Training: 203 images in global batches of 50 (the last one, 3 images, split 2 + 1), augmented.
    model = SmallNet(splits)
    loader = TensorLoader(splits.train, torch.arange(203), batch_size=50, shuffle=True, augment=splits.augment, seed=5)
    optimizer = make_optimizer(model, 0.05, 0.9, 5e-4)
    results["initial"] = {name: value.clone() for name, value in model.state_dict().items()}
    stats = [train_epoch(model, loader, optimizer, torch.device("cpu"), epoch=e) for e in range(2)]
    results["train"] = {name: value.clone() for name, value in model.state_dict().items()}
    results["train_mask_kept"] = all(bool((m.weight[m.weight_mask == 0] == 0).all()) for m in model.features if hasattr(m, "weight_mask"))
    results["train_stats"] = [(s["loss"], s["acc"]) for s in stats]
    # What DDP broadcasts before each forward pass: batch norm's statistics, not the masks.
    results["broadcast_buffers"] = sorted(distributed.wrap(model).named_module_buffers) if distributed.active() else None

    # Inference over 77 images in batches of 16: every logit, in order, on every rank.
    logits, labels = predict(model, TensorLoader(splits.test, torch.arange(77), batch_size=16))
    results["predict"] = (logits, labels)
    results["evaluate"] = evaluate(model, TensorLoader(splits.test, torch.arange(77), batch_size=16))

    # RL's random labels: drawn for the global batch, each rank taking its share.
    labels = torch.Generator().manual_seed(3)
    forget = TensorLoader(splits.train, torch.arange(0, 45), batch_size=20, shuffle=True, seed=5)
    train_epoch(model, forget, optimizer, torch.device("cpu"), relabel=random_labels(10, labels))
    results["rl"] = {name: value.clone() for name, value in model.state_dict().items()}

    # FF's Fisher over the (augmented) retain set and IU's whole update (sums over the retain and forget sets).
    model.eval()
    retain = TensorLoader(splits.train, torch.arange(10, 170), batch_size=32, augment=splits.augment, seed=3)
    results["fisher"] = fisher_diagonal(model, in_order(retain, batch_size=16), 10, method="loop")
    forget = TensorLoader(splits.train, torch.arange(10), batch_size=32)
    args = type("Args", (), {"iu_damping": 20, "iu_chunk_size": 8, "alpha": 3.0})()
    wfisher({"retain": retain, "forget": forget}, model, None, args)
    results["iu"] = {name: value.clone() for name, value in model.state_dict().items()}

    # Only rank 0 writes: every rank writes its own rank, the file must say 0.
    atomic_save_json({"rank": distributed.rank()}, f"{out}/who_wrote.json")

    # A write that fails on rank 0 (a full disk, say) stops every rank instead of leaving the others waiting.
    outcome = 0
    try:
        with atomic_path(f"{out}/failed_write.txt"):
            if distributed.is_main():
                raise OSError("no space left on device (simulated)")
    except OSError:
        outcome = 1
    except RuntimeError:
        outcome = 2
    results["failed_write"] = distributed.gather_cat(torch.tensor([outcome]))
    atomic_torch_save(results, f"{out}/results.pt")
    distributed.finish()


if __name__ == "__main__":
    main(sys.argv[1])
