import hashlib
import os
import pickle
import socket
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dataset import Augment, TensorLoader, load_dataset, parse_indexes, select_forget_set, unlearning_positions
from errors import UserError
from tests.conftest import run_script


def test_digits_loads_without_network(digits, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "create_connection", no_network)
    splits = load_dataset(SimpleNamespace(dataset="digits", no_aug=False))
    assert splits.num_classes == 10
    assert splits.train.images.dtype == torch.uint8 and splits.train.images.shape[1:] == (3, 32, 32)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 1797
    # val holds 10% of every class of the training pool
    for c in range(10):
        pool = int((splits.train.labels == c).sum() + (splits.val.labels == c).sum())
        assert int((splits.val.labels == c).sum()) == int(0.1 * pool)
    assert torch.equal(splits.train.images, digits.train.images)  # the split is fixed


def write_tiny_cifar10(root, n_train=100, n_test=20):
    """A CIFAR-10 folder in the real format (pickled batches, meta), with random images."""
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)
    rng = np.random.RandomState(0)
    files = {}

    def dump(name, obj):
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            pickle.dump(obj, f)
        with open(path, "rb") as f:
            files[name] = hashlib.md5(f.read()).hexdigest()

    per_batch = n_train // 5
    for b in range(1, 6):
        labels = [int(i % 10) for i in range(per_batch)]
        dump(f"data_batch_{b}", {"data": rng.randint(0, 256, (per_batch, 3072), dtype=np.uint8), "labels": labels})
    dump("test_batch", {"data": rng.randint(0, 256, (n_test, 3072), dtype=np.uint8), "labels": [i % 10 for i in range(n_test)]})
    dump("batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
    return files


def test_cifar10_loads_from_a_tiny_folder_in_cifar_format(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    md5 = write_tiny_cifar10(str(tmp_path))
    # Only the checksums change: torchvision still verifies every file against them.
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{b}", md5[f"data_batch_{b}"]] for b in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": md5["batches.meta"]})
    splits = load_dataset(SimpleNamespace(dataset="cifar10", data=str(tmp_path), no_aug=False))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (90, 10, 20)  # 10% of each class held out
    assert splits.train.images.shape[1:] == (3, 32, 32) and len(splits.test) == 20
    assert splits.mean == pytest.approx((0.4914, 0.4822, 0.4465))
    # The pixels are the file's, HWC -> CHW.
    with open(os.path.join(tmp_path, "cifar-10-batches-py", "test_batch"), "rb") as f:
        first = pickle.load(f)["data"][0]
    assert torch.equal(splits.test.images[0].flatten(), torch.from_numpy(first))


def test_missing_cifar10_stops_with_one_clear_line(tmp_path):
    result = run_script("main_imp.py", "--dataset", "cifar10", "--data", tmp_path / "nothing", "--save_dir", tmp_path / "out")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cifar10 not found") and "cifar-10-batches-py" in last and "--dataset digits" in last
    assert "Traceback" not in result.stderr


def test_whole_class_forget_set_and_its_removal_from_val_and_test(digits):
    forget = select_forget_set(digits.train.labels.numpy(), class_to_replace=3, num_indexes_to_replace=None, seed=2)
    assert forget.whole_class == 3
    assert set(forget.positions) == set(np.flatnonzero(digits.train.labels.numpy() == 3))
    pos = unlearning_positions(digits, forget)
    assert not (digits.val.labels[pos["val"]] == 3).any() and not (digits.test.labels[pos["test"]] == 3).any()
    assert len(pos["test"]) == int((digits.test.labels != 3).sum())
    # naming the class size explicitly is the same whole-class forgetting
    n = int((digits.train.labels == 3).sum())
    same = select_forget_set(digits.train.labels.numpy(), class_to_replace=3, num_indexes_to_replace=n, seed=5)
    assert same.whole_class == 3 and np.array_equal(same.positions, forget.positions)


@pytest.mark.parametrize(
    "options",
    [
        dict(class_to_replace=1, num_indexes_to_replace=20),
        dict(class_to_replace=-1, num_indexes_to_replace=100),
        dict(indexes_to_replace="5,17,3,900"),
    ],
)
def test_forget_and_retain_partition_the_training_split(digits, options):
    labels = digits.train.labels.numpy()
    forget = select_forget_set(labels, seed=2, **options)
    pos = unlearning_positions(digits, forget)
    assert forget.whole_class is None
    assert len(np.intersect1d(pos["retain"], pos["forget"])) == 0
    assert np.array_equal(np.sort(np.concatenate([pos["retain"], pos["forget"]])), np.arange(len(labels)))
    assert len(pos["test"]) == len(digits.test)  # nothing removed when not class-wise
    if options.get("class_to_replace", -1) >= 0:
        assert (labels[forget.positions] == options["class_to_replace"]).all()


def test_a_seed_fixes_the_forget_set_and_another_seed_changes_it(digits):
    labels = digits.train.labels.numpy()
    a = select_forget_set(labels, class_to_replace=-1, num_indexes_to_replace=50, seed=2)
    b = select_forget_set(labels, class_to_replace=-1, num_indexes_to_replace=50, seed=2)
    c = select_forget_set(labels, class_to_replace=-1, num_indexes_to_replace=50, seed=3)
    assert np.array_equal(a.positions, b.positions) and not np.array_equal(a.positions, c.positions)
    # drawn as the original drew it: RandomState(seed - 1) over the candidates
    expected = np.sort(np.random.RandomState(1).choice(np.arange(len(labels)), 50, replace=False))
    assert np.array_equal(a.positions, expected)


def test_explicit_indexes_from_list_and_files(tmp_path, digits):
    labels = digits.train.labels.numpy()
    np.save(tmp_path / "idx.npy", np.array([9, 4, 7]))
    (tmp_path / "idx.txt").write_text("9\n4\n7\n")
    for value in ("9,4,7", str(tmp_path / "idx.npy"), str(tmp_path / "idx.txt")):
        assert select_forget_set(labels, indexes_to_replace=value).positions.tolist() == [4, 7, 9]
    assert parse_indexes(None) is None


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(class_to_replace=0, num_indexes_to_replace=100000), "has"),
        (dict(class_to_replace=12), "classes are 0..9"),
        (dict(class_to_replace=-1), "needs --num_indexes_to_replace"),
        (dict(indexes_to_replace="1,1"), "more than once"),
        (dict(indexes_to_replace="1,99999"), "must be in"),
        (dict(indexes_to_replace="a,b"), "comma-separated"),
    ],
)
def test_bad_forget_options_say_what_is_wrong(digits, options, message):
    with pytest.raises(UserError, match=message):
        select_forget_set(digits.train.labels.numpy(), **options)


def test_loader_covers_every_index_once_per_epoch_in_a_seeded_order(digits):
    indices = np.arange(0, len(digits.train), 3)
    loader = TensorLoader(digits.train, indices, batch_size=64, shuffle=True, seed=7)
    epoch1 = torch.cat([y for _, y in loader])
    epoch2 = torch.cat([y for _, y in loader])
    assert sorted(epoch1.tolist()) == sorted(digits.train.labels[indices].tolist())
    assert not torch.equal(epoch1, epoch2)  # reshuffled every epoch
    again = TensorLoader(digits.train, indices, batch_size=64, shuffle=True, seed=7)
    assert torch.equal(torch.cat([y for _, y in again]), epoch1)
    x, _ = next(iter(loader))
    assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1


def zero_padded_shift(src, crop):
    """(dy, dx) if `crop` is `src` shifted by it in [-2, 2] with a zero border, else None."""
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            shifted = torch.zeros_like(src)
            ys, xs = slice(max(0, -dy), 8 - max(0, dy)), slice(max(0, -dx), 8 - max(0, dx))
            yd, xd = slice(max(0, dy), 8 - max(0, -dy)), slice(max(0, dx), 8 - max(0, -dx))
            shifted[:, ys, xs] = src[:, yd, xd]
            if torch.equal(shifted, crop):
                return dy, dx
    return None


def test_augmentation_crops_with_zero_padding_and_flips():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8).to(torch.uint8) + 1  # no zero pixels
    crops = Augment(8, padding=2, flip=False)(images.repeat(200, 1, 1, 1), torch.Generator().manual_seed(0))
    shifts = [zero_padded_shift(images[i % 2], crop) for i, crop in enumerate(crops)]
    assert None not in shifts, "a crop is not a zero-padded shift of its image"
    assert len(set(shifts)) == 25  # all 5 x 5 offsets occur
    flips = Augment(8, padding=0, flip=True)(images.repeat(500, 1, 1, 1), torch.Generator().manual_seed(0))
    flipped = sum(torch.equal(f, images[i % 2].flip(-1)) for i, f in enumerate(flips))
    assert 400 < flipped < 600  # p = 0.5 over 1,000 images
    # Both at once (one gather): each output is a shifted crop, or the mirror image of one.
    both = Augment(8, padding=2, flip=True)(images.repeat(200, 1, 1, 1), torch.Generator().manual_seed(1))
    kinds = []
    for i, crop in enumerate(both):
        plain, mirrored = zero_padded_shift(images[i % 2], crop), zero_padded_shift(images[i % 2].flip(-1), crop)
        assert (plain, mirrored) != (None, None), "a crop is neither a shifted nor a mirrored shifted image"
        kinds.append((plain is None, mirrored or plain))
    assert 150 < sum(k[0] for k in kinds) < 250 and len({k[1] for k in kinds}) == 25


def reference_batches(data, indices, batch_size, padding, size, seed, epochs=2):
    """A shuffled, augmented loader's batches the plain way: per batch, draw the crop offsets
    and flips from the generator right then, and cut each image out one by one."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(epochs):
        order = indices[torch.randperm(len(indices), generator=generator)]
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            n = len(idx)
            side = data.images.shape[-1] + 2 * padding
            dy = torch.randint(0, side - size + 1, (n,), generator=generator)
            dx = torch.randint(0, side - size + 1, (n,), generator=generator)
            flip = torch.rand(n, generator=generator) < 0.5
            images = []
            for i, position in enumerate(idx):
                padded = torch.nn.functional.pad(data.images[position], (padding,) * 4)
                crop = padded[:, dy[i] : dy[i] + size, dx[i] : dx[i] + size]
                images.append(crop.flip(-1) if flip[i] else crop)
            out.append((torch.stack(images).float() / 255, data.labels[idx]))
    return out


def test_batches_drawn_per_epoch_equal_those_drawn_batch_by_batch(digits):
    """The loader draws an epoch's order and augmentation at its start and moves them to the
    device once: its batches must be bit for bit those drawn batch by batch."""
    indices = torch.arange(10, 310)
    loader = TensorLoader(digits.train, indices, batch_size=64, shuffle=True, augment=Augment(28, 3, flip=True), seed=7)
    got = [batch for _ in range(2) for batch in loader]
    expected = reference_batches(digits.train, indices, 64, padding=3, size=28, seed=7)
    assert len(got) == len(expected) == 10
    for (images, labels), (ref_images, ref_labels) in zip(got, expected):
        assert torch.equal(images, ref_images) and torch.equal(labels, ref_labels)
    # each rank (a process with its own loader) gets its part of the whole batch, augmented alike
    fresh = lambda: TensorLoader(digits.train, indices, batch_size=64, shuffle=True, augment=Augment(28, 3, flip=True), seed=7)  # noqa: E731
    shares = [list(fresh().split_for_rank(rank, 3)) for rank in range(3)]
    for (images, labels), *parts in zip(expected[:5], *shares, strict=True):
        assert torch.equal(torch.cat([part[0] for part in parts]), images) and torch.equal(torch.cat([part[1] for part in parts]), labels)


def test_a_last_training_batch_of_one_image_joins_the_batch_before(digits, caplog):
    caplog.set_level("INFO")
    loader = TensorLoader(digits.train, torch.arange(129), batch_size=64, shuffle=True, seed=0)
    sizes = [len(labels) for _, labels in loader]
    assert sizes == [64, 65] and len(loader) == 2
    assert sorted(torch.cat([labels for _, labels in loader]).tolist()) == sorted(digits.train.labels[:129].tolist())
    assert "the last batch would hold one image, so it joins the batch before" in caplog.text
    # evaluation (unshuffled) keeps every batch as it is, and other remainders are left alone
    assert [len(labels) for _, labels in TensorLoader(digits.train, torch.arange(129), batch_size=64)] == [64, 64, 1]
    assert [len(labels) for _, labels in TensorLoader(digits.train, torch.arange(130), batch_size=64, shuffle=True)] == [64, 64, 2]


# ---------------------------------------------------------------- --train_positions (U-LiRA's shadow halves)


def test_train_positions_keep_exactly_the_listed_training_images(digits, tmp_path):
    positions = np.random.RandomState(0).permutation(len(digits.train))[:200]
    np.save(tmp_path / "half.npy", positions)
    (tmp_path / "half.txt").write_text(" ".join(map(str, positions)))
    for file in ("half.npy", "half.txt"):
        splits = load_dataset(SimpleNamespace(dataset="digits", no_aug=False, train_positions=str(tmp_path / file)))
        keep = np.sort(positions)
        assert torch.equal(splits.train.images, digits.train.images[keep])
        assert torch.equal(splits.train.labels, digits.train.labels[keep])
        assert torch.equal(splits.test.images, digits.test.images)  # val and test untouched


@pytest.mark.parametrize(
    "value, message",
    [("0,1,1", "more than once"), ("0,99999", "positions must be in [0,"), ("missing.txt", "file not found"), ("a,b", "expected")],
)
def test_bad_train_positions_are_one_clear_error(value, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[")) as err:
        load_dataset(SimpleNamespace(dataset="digits", no_aug=False, train_positions=value))
    assert str(err.value).startswith("--train_positions")


@pytest.mark.slow
def test_a_shadow_model_trains_and_unlearns_within_its_positions(tmp_path):
    half = tmp_path / "half.txt"
    half.write_text(",".join(map(str, range(0, 1298, 2))))  # every second of the 1,298 training images
    imp = run_script(
        "main_imp.py", "--dataset", "digits", "--arch", "resnet20s", "--epochs", "1", "--batch_size", "128",
        "--pruning_times", "1", "--train_positions", half, "--save_dir", tmp_path / "imp",
    )  # fmt: skip
    assert imp.returncode == 0, imp.stderr
    assert "digits: 649 train" in imp.stderr
    forget = [
        "--dataset", "digits", "--arch", "resnet20s", "--batch_size", "128", "--mask", tmp_path / "imp" / "0model_SA_best.pth.tar",
        "--unlearn", "raw", "--class_to_replace", "-1", "--num_indexes_to_replace", "50",
    ]  # fmt: skip
    ok = run_script("main_forget.py", *forget, "--train_positions", half, "--save_dir", tmp_path / "raw")
    assert ok.returncode == 0, ok.stderr
    assert "forget 50, retain 599 training images" in ok.stderr
    refused = run_script("main_forget.py", *forget, "--save_dir", tmp_path / "other")  # every position, unlike the mask
    assert refused.returncode != 0 and refused.stderr.strip().splitlines()[-1].startswith("error: --mask")
    assert "--train_positions" in refused.stderr
