import os
import subprocess
import sys
from types import SimpleNamespace

# The suite runs on the CPU, also on a machine with GPUs: CUDA is hidden from this process
# and every script it starts, before torch first looks for it. UNLEARN_TESTS_SEE_CUDA=1
# leaves it visible (bench/gpu_check.sh runs the in-process tests on a GPU that way).
if os.environ.get("UNLEARN_TESTS_SEE_CUDA") != "1":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""

# Under pytest-xdist (`make test`: -n TEST_WORKERS) each worker, and every script it starts,
# gets its share of the cores, so that the workers do not oversubscribe them. Set before
# torch reads OMP_NUM_THREADS; a value the user exported is kept.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _workers)))

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
torch.set_num_threads(min(2, torch.get_num_threads()))


def run_script(script, *args, timeout=600):
    """Run an entry script in a subprocess; returns the CompletedProcess."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )


@pytest.fixture(scope="session")
def digits():
    from dataset import load_dataset

    return load_dataset(SimpleNamespace(dataset="digits", no_aug=False))


def train_masks(out, *data):
    """A dense and a 95%-sparse resnet20s trained briefly on digits by main_imp.py (`data`: its data options)."""
    result = run_script(
        "main_imp.py", "--dataset", "digits", "--arch", "resnet20s", "--epochs", "4", "--decreasing_lr", "50", "--batch_size", "64",
        "--rate", "0.95", "--pruning_times", "2", "--prune_type", "lt", *data, "--save_dir", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return {"dense": out / "0model_SA_best.pth.tar", "sparse": out / "1model_SA_best.pth.tar"}


@pytest.fixture(scope="session")
def digits_masks(tmp_path_factory):
    """A dense and a 95%-sparse resnet20s trained briefly on the whole of digits."""
    return train_masks(tmp_path_factory.mktemp("imp"))


# A small share of digits: 30 training images per class (300), 10 per class in validation and
# test. For tests of what every method writes and keeps, where the numbers do not matter.
SMALL_DIGITS = ["--train_per_class", "30", "--test_per_class", "10"]


@pytest.fixture(scope="session")
def small_digits_masks(tmp_path_factory):
    """digits_masks on SMALL_DIGITS (runs from them pass SMALL_DIGITS too)."""
    return train_masks(tmp_path_factory.mktemp("imp_small"), *SMALL_DIGITS)
