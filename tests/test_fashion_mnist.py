"""Fashion-MNIST: from --data in torchvision's layout or Debian's package folder, padded to 32x32,
with the fixed validation split and the size caps; and the release itself when it is installed."""

import gzip
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dataset import fashion_mnist, load_dataset, torchvision_files
from dataset.fashion_mnist import FASHION_MNIST_FILES
from errors import UserError
from tests.conftest import run_script

SYSTEM_FILES = os.path.join(fashion_mnist.FASHION_MNIST_SYSTEM_DIR, "train-images-idx3-ubyte.gz")


def write_idx(path, array):
    """An IDX file of unsigned bytes, as the release's, gzipped."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_tiny_release(folder, per_class_train=20, per_class_test=5):
    """The four files of the release with a few random 28x28 images per class; returns the arrays."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(0)
    arrays = {}
    for split, n in (("train", per_class_train), ("test", per_class_test)):
        labels = np.repeat(np.arange(10), n)
        rng.shuffle(labels)
        images = rng.randint(1, 256, (len(labels), 28, 28))
        image_file, label_file = FASHION_MNIST_FILES[split]
        write_idx(os.path.join(folder, image_file + ".gz"), images)
        write_idx(os.path.join(folder, label_file + ".gz"), labels)
        arrays[split] = images, labels
    return arrays


def fashion(data, **caps):
    return load_dataset(SimpleNamespace(dataset="fashionmnist", data=str(data), no_aug=False, **caps))


def test_fashion_mnist_from_torchvisions_layout_padded_to_32_with_the_fixed_split(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "no_system_copy"))
    arrays = write_tiny_release(tmp_path / "FashionMNIST" / "raw")
    splits = fashion(tmp_path)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (180, 20, 50)  # 10% of each class held out
    assert splits.train.images.shape[1:] == (3, 32, 32) and splits.train.images.dtype == torch.uint8
    for c in range(10):
        assert int((splits.val.labels == c).sum()) == 2
    first = splits.test.images[0]
    assert torch.equal(first[0, 2:30, 2:30], torch.from_numpy(arrays["test"][0][0].astype(np.uint8)))  # the file's pixels
    assert int(first[:, :2].sum()) == int(first[:, 30:].sum()) == 0 and torch.equal(first[0], first[2])  # zero padding, grey
    assert splits.augment.flip and splits.augment.padding == 4  # CIFAR's augmentation
    assert splits.mean == (fashion_mnist.FASHION_MNIST_MEAN,) * 3


def test_size_caps_keep_a_fixed_subset_per_class(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "FashionMNIST" / "raw"))  # the package's folder
    write_tiny_release(tmp_path / "FashionMNIST" / "raw")
    full = fashion(tmp_path / "elsewhere")
    capped = fashion(tmp_path / "elsewhere", train_per_class=7, test_per_class=3)
    assert (len(capped.train), len(capped.val), len(capped.test)) == (70, 20, 30)  # val has only 2 per class
    assert all(int((capped.train.labels == c).sum()) == 7 for c in range(10))
    again = fashion(tmp_path / "elsewhere", train_per_class=7, test_per_class=3)
    assert torch.equal(again.train.images, capped.train.images)  # fixed, whatever --seed is
    full_rows = {tuple(x.flatten().tolist()) for x in full.train.images}
    assert all(tuple(x.flatten().tolist()) in full_rows for x in capped.train.images)  # a subset of the training split


def test_missing_fashion_mnist_names_both_ways_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "no_system_copy"))

    def offline(cls, name, folder, layout, **kwargs):
        raise torchvision_files.missing(name, folder, layout, "no network in this test")

    monkeypatch.setattr(fashion_mnist, "open_torchvision_dataset", offline)
    with pytest.raises(UserError) as err:
        fashion(tmp_path / "nothing")
    message = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in message and "download" in message and "\n" not in message


@pytest.mark.skipif(
    not os.path.isfile(SYSTEM_FILES), reason="Debian's dataset-fashion-mnist is not installed (make test installs it as root)"
)
@pytest.mark.slow
def test_the_real_release_and_a_short_training_on_it(tmp_path):
    splits = fashion(tmp_path / "nothing_here")  # Debian's folder
    assert len(splits.train) + len(splits.val) == 60000 and len(splits.test) == 10000
    for c in range(10):
        assert int((splits.train.labels == c).sum() + (splits.val.labels == c).sum()) == 6000
        assert int((splits.val.labels == c).sum()) == 600 and int((splits.test.labels == c).sum()) == 1000
    assert splits.train.images.shape[1:] == (3, 32, 32)
    result = run_script(
        "main_imp.py", "--dataset", "fashionmnist", "--data", tmp_path / "nothing_here", "--arch", "resnet20s", "--epochs", "1",
        "--batch_size", "64", "--train_per_class", "30", "--test_per_class", "10", "--save_dir", tmp_path / "imp",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "fashionmnist: 300 train, 100 val, 100 test images" in result.stderr
