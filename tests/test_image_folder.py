"""--dataset imagenet: an ImageFolder tree streamed from disk (dataset/folders.py), on a tiny tree the tests write."""

import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import run_script

from checkpoints import load_checkpoint
from dataset import load_dataset, make_loader, with_batch_size
from dataset.folders import StreamLoader, eval_transform
from errors import UserError

CLASSES = ("n01440764", "n01443537", "n01484850")


def write_tree(root, train_per_class=4, val_per_class=2, classes=CLASSES, val_classes=None):
    """A tiny ImageNet layout: root/train/<wnid>/*.JPEG, root/val/<wnid>/*.JPEG, images of different sizes."""
    from PIL import Image

    rng = np.random.RandomState(0)
    for split, count, names in (("train", train_per_class, classes), ("val", val_per_class, val_classes or classes)):
        for c, wnid in enumerate(names):
            folder = os.path.join(root, split, wnid)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                pixels = (rng.rand(30 + 4 * i, 40, 3) * 60 + 80 * c).astype(np.uint8)
                Image.fromarray(pixels).save(os.path.join(folder, f"{wnid}_{i}.JPEG"))
    return str(root)


def listing(root):
    """Every file under root with its size and modification time."""
    return sorted(
        (p, os.path.getsize(os.path.join(d, p)), os.path.getmtime(os.path.join(d, p))) for d, _, files in os.walk(root) for p in files
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("imagenet"))


def imagenet_args(data, **extra):
    return SimpleNamespace(dataset="imagenet", data=data, num_workers=0, no_aug=False, **extra)


def test_the_splits_come_from_the_class_folders(tree):
    splits = load_dataset(imagenet_args(tree))
    assert splits.num_classes == 3 and len(splits.train) == 12 and len(splits.val) == 6
    assert splits.test is splits.val  # the official val set is both, as in the original's ImageNet path
    assert splits.train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    paths = [splits.train.path(i) for i in range(len(splits.train))]
    assert all(f"/train/{CLASSES[label]}/" in path for path, label in zip(paths, splits.train.labels.tolist()))
    assert splits.input_shape == (3, 224, 224)


def test_val_labels_follow_the_training_folders_names(tmp_path):
    """A val folder holding fewer classes still labels them by the training classes' indices."""
    root = write_tree(tmp_path, val_classes=CLASSES[1:])
    splits = load_dataset(imagenet_args(root))
    assert splits.val.labels.tolist() == [1, 1, 2, 2]


def test_evaluation_batches_are_the_standard_transform_of_each_file(tree):
    """Workers send uint8, scaled on the device: bit for bit torchvision's float transform (ToTensor)."""
    from PIL import Image
    from torchvision import transforms

    splits = load_dataset(imagenet_args(tree))
    images, labels = next(iter(make_loader(splits.val, [5, 0, 3], batch_size=3)))
    assert images.shape == (3, 3, 224, 224) and images.dtype == torch.float32
    assert labels.tolist() == [2, 0, 1]
    standard = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])
    with Image.open(splits.val.path(3)) as img:
        assert torch.equal(images[2], standard(img.convert("RGB")))
        assert eval_transform()(img.convert("RGB")).dtype == torch.uint8  # what a worker sends


def test_a_loader_keeps_its_workers_from_one_pass_to_the_next(tree):
    """Every epoch and every evaluation reuse the loader's decoding processes; the crops still change per epoch."""
    splits = load_dataset(imagenet_args(tree))
    splits.train.num_workers = 2
    try:
        loader = StreamLoader(splits.train, batch_size=4, shuffle=True, augment=splits.augment, seed=3)
        first = epoch_of(loader)
        kept = loader._kept[None].loader
        workers = [w.pid for w in kept._iterator._workers]
        second = epoch_of(loader)
        assert loader._kept[None].loader is kept and [w.pid for w in kept._iterator._workers] == workers
        assert all(w.is_alive() for w in kept._iterator._workers)
        assert not torch.equal(torch.cat([b[0] for b in first]), torch.cat([b[0] for b in second]))
        # the same two epochs from a fresh loader with workers of its own
        fresh = StreamLoader(splits.train, batch_size=4, shuffle=True, augment=splits.augment, seed=3)
        for (a, la), (b, lb) in zip(first + second, epoch_of(fresh) + epoch_of(fresh)):
            assert torch.equal(a, b) and torch.equal(la, lb)
        # a pass broken off early leaves the next one whole
        next(iter(loader))
        assert len(epoch_of(loader)) == len(loader)
    finally:
        splits.train.num_workers = 0


def epoch_of(loader):
    return [(images.clone(), labels.clone()) for images, labels in loader]


def test_augmentation_is_seeded_per_image_whatever_the_number_of_workers(tree):
    splits = load_dataset(imagenet_args(tree))
    one = StreamLoader(splits.train, batch_size=5, shuffle=True, augment=splits.augment, seed=3)
    splits.train.num_workers = 2
    two = StreamLoader(splits.train, batch_size=5, shuffle=True, augment=splits.augment, seed=3)
    try:
        for first, second in zip(epoch_of(one), epoch_of(two)):
            assert torch.equal(first[1], second[1]) and torch.equal(first[0], second[0])
    finally:
        splits.train.num_workers = 0
    other_seed = epoch_of(StreamLoader(splits.train, batch_size=12, shuffle=True, augment=splits.augment, seed=4))[0]
    same_seed = torch.cat([b[0] for b in epoch_of(StreamLoader(splits.train, batch_size=12, shuffle=True, augment=splits.augment, seed=3))])
    assert not torch.equal(other_seed[0], same_seed)
    # augmentation changes the pixels: the crops are not the evaluation transform's
    plain = torch.cat([b[0] for b in epoch_of(StreamLoader(splits.train, batch_size=12, shuffle=True, augment=None, seed=3))])
    assert not torch.equal(plain, same_seed)


def test_a_saved_generator_state_gives_the_same_next_epoch(tree):
    """What a checkpoint keeps (the loader's generator) is enough to replay the next epoch exactly."""
    splits = load_dataset(imagenet_args(tree))
    loader = StreamLoader(splits.train, batch_size=4, shuffle=True, augment=splits.augment, seed=7)
    epoch_of(loader)
    state = loader.generator_state()
    expected = epoch_of(loader)
    resumed = StreamLoader(splits.train, batch_size=4, shuffle=True, augment=splits.augment, seed=7)
    resumed.set_generator_state(state)
    for (a, la), (b, lb) in zip(expected, epoch_of(resumed)):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_the_methods_loader_helpers_keep_a_stream(tree):
    splits = load_dataset(imagenet_args(tree))
    loader = make_loader(splits.train, [1, 5, 9], batch_size=2, shuffle=True, augment=splits.augment, seed=1)
    rebatched = with_batch_size(loader, 3, augment=False)
    assert isinstance(rebatched, StreamLoader) and rebatched.augment is None and rebatched.num_samples == 3
    assert next(iter(rebatched))[0].shape[0] == 3


def test_caps_keep_a_seeded_subset_of_files(tree):
    splits = load_dataset(imagenet_args(tree, train_per_class=2, test_per_class=1))
    assert len(splits.train) == 6 and len(splits.val) == 3
    assert splits.train.labels.tolist() == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize(
    "damage, message",
    [
        ("no val", "val not found"),
        ("empty class", "no valid file"),
        ("unknown val class", "has class folders that train/ has not"),
    ],
)
def test_a_malformed_tree_gets_one_line_naming_the_layout(tmp_path, damage, message):
    root = write_tree(tmp_path)
    if damage == "no val":
        import shutil

        shutil.rmtree(os.path.join(root, "val"))
    elif damage == "empty class":
        for name in os.listdir(os.path.join(root, "train", CLASSES[1])):
            os.remove(os.path.join(root, "train", CLASSES[1], name))
    else:
        os.rename(os.path.join(root, "val", CLASSES[2]), os.path.join(root, "val", "n99999999"))
    with pytest.raises(UserError) as err:
        load_dataset(imagenet_args(root))
    assert message in str(err.value).lower() and "\n" not in str(err.value)


@pytest.mark.slow
def test_imagenet_prunes_and_unlearns_end_to_end_without_writing_under_data(tree, tmp_path, small_digits_masks):
    before = listing(tree)
    common = ["--dataset", "imagenet", "--data", tree, "--arch", "resnet18", "--batch_size", "6", "--num_workers", "2"]
    imp = run_script("main_imp.py", *common, "--epochs", "1", "--pruning_times", "2", "--rewind_epoch", "1", "--save_dir", tmp_path / "imp")
    assert imp.returncode == 0, imp.stderr
    sparse = tmp_path / "imp" / "1model_SA_best.pth.tar"
    checkpoint = load_checkpoint(sparse, "cpu")
    assert checkpoint["args"]["imagenet_arch"], "resnet18 on ImageNet takes the 7x7 stem"
    forget = run_script(
        "main_forget.py", *common, "--mask", sparse, "--unlearn", "FT", "--unlearn_epochs", "1", "--class_to_replace", "1",
        "--save_dir", tmp_path / "ft",
    )  # fmt: skip
    assert forget.returncode == 0, forget.stderr
    import json

    with open(tmp_path / "ft" / "FTeval_result.json") as f:
        result = json.load(f)
    assert result["accuracy"]["forget"] >= 0 and len(np.load(tmp_path / "ft" / "forget_indexes.npy")) == 4
    assert listing(tree) == before, "nothing under --data is written"

    # A mask trained on another dataset, and the backdoor script, are refused in one line.
    for script, extra in (("main_forget.py", ["--mask", small_digits_masks["sparse"], "--unlearn", "FT"]), ("main_backdoor.py", [])):
        bad = run_script(script, *common, *extra, "--save_dir", tmp_path / "bad")
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_under_torchrun_only_rank_0_lists_the_folders(tree, tmp_path, monkeypatch):
    """The other ranks take rank 0's listing (1.28 million files, listed once, not once per process)."""
    import distributed
    from dataset import folders

    sent = []
    monkeypatch.setattr(distributed, "active", lambda: True)

    def broadcast(message, src):  # rank 0 sends its message; another rank receives `given`
        sent.append(list(message))
        if message[0] is None:
            message[0] = given

    monkeypatch.setattr(distributed.dist, "broadcast_object_list", broadcast)
    given = ("result", folders.list_class_folders(tree))
    monkeypatch.setattr(distributed, "is_main", lambda: False)
    train, val, classes = folders.load_class_folders(str(tmp_path / "not_listed_here"))  # a folder rank 1 never reads
    assert classes == len(CLASSES) and np.array_equal(train.paths, given[1][0][0]) and len(val) == len(given[1][1][1])
    given = ("error", "imagenet: something rank 0 found wrong")
    with pytest.raises(UserError, match="something rank 0 found wrong"):
        folders.load_class_folders(str(tmp_path / "not_listed_here"))
    given = ("failed", "PermissionError: [Errno 13] Permission denied: 'train/n1'")
    with pytest.raises(RuntimeError, match="rank 0 failed .PermissionError"):
        folders.load_class_folders(str(tmp_path / "not_listed_here"))
    monkeypatch.setattr(distributed, "is_main", lambda: True)  # rank 0 lists, then sends what it found
    train, _, _ = folders.load_class_folders(tree)
    assert sent[-1][0][0] == "result" and np.array_equal(sent[-1][0][1][0][0], train.paths)

    def unreadable(data_dir, tree):
        raise PermissionError("Permission denied: 'train/n1'")

    monkeypatch.setattr(folders, "list_class_folders", unreadable)  # any failure reaches the waiting ranks, then fails rank 0
    with pytest.raises(PermissionError):
        folders.load_class_folders(tree)
    assert sent[-1] == [("failed", "PermissionError: Permission denied: 'train/n1'")]


# ---------------------------------------------------------------- --dataset imagefolder: any class-folder tree


def write_own_tree(root, per_class=6, side=(20, 28)):
    """A user's own data set: PNG files in folders named after their classes, not in ImageNet's order."""
    from PIL import Image

    rng = np.random.RandomState(1)
    for split, count in (("train", per_class), ("val", 2)):
        for c, name in enumerate(("zebra", "cat", "dog")):
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                pixels = (rng.rand(side[0] + i, side[1], 3) * 50 + 60 * c).astype(np.uint8)
                Image.fromarray(pixels).save(os.path.join(folder, f"{i}.png"))
    return str(root)


def own_args(data, **extra):
    options = dict(dataset="imagefolder", data=data, num_workers=0, no_aug=False, image_size=16, image_mean="0.5", image_std="0.2,0.3,0.4")
    return SimpleNamespace(**{**options, **extra})


def test_any_class_folder_tree_is_a_dataset_with_its_size_and_normalisation(tmp_path):
    from PIL import Image
    from torchvision import transforms

    root = write_own_tree(tmp_path)
    before = listing(root)
    splits = load_dataset(own_args(root))
    assert splits.name == "imagefolder" and splits.num_classes == 3 and splits.test is splits.val
    assert splits.train.labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6  # classes numbered by sorted folder name: cat, dog, zebra
    assert "/train/cat/" in splits.train.path(0) and "/train/zebra/" in splits.train.path(17)
    assert splits.mean == (0.5, 0.5, 0.5) and splits.std == (0.2, 0.3, 0.4)  # one value stands for all three channels
    assert splits.input_shape == (3, 16, 16)
    images, labels = next(iter(make_loader(splits.val, [0, 5], batch_size=2)))
    assert images.shape == (2, 3, 16, 16) and labels.tolist() == [0, 2]
    standard = transforms.Compose([transforms.Resize(18), transforms.CenterCrop(16), transforms.ToTensor()])  # 16 x 256 / 224
    with Image.open(splits.val.path(5)) as img:
        assert torch.equal(images[1], standard(img.convert("RGB")))
    train_images, _ = next(iter(make_loader(splits.train, range(4), batch_size=4, shuffle=True, augment=splits.augment)))
    assert train_images.shape == (4, 3, 16, 16)
    assert listing(root) == before  # read, never written


def test_a_malformed_own_tree_names_imagefolder_and_its_layout(tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset(own_args(str(tmp_path / "nothing")))
    assert str(err.value).startswith("imagefolder: ") and "/train/<class>/*" in str(err.value)


@pytest.mark.slow
def test_an_own_tree_prunes_and_unlearns_end_to_end(tmp_path):
    """resnet20s on 16-pixel crops (no ImageNet stem below 128 pixels); resnet18 at 224 takes it, as on ImageNet."""
    root = write_own_tree(tmp_path / "data")
    common = ["--dataset", "imagefolder", "--data", root, "--image_size", "16", "--arch", "resnet20s", "--batch_size", "6"]
    common += ["--num_workers", "0"]
    imp = run_script("main_imp.py", *common, "--epochs", "1", "--pruning_times", "2", "--rewind_epoch", "1", "--save_dir", tmp_path / "imp")
    assert imp.returncode == 0, imp.stderr
    assert "imagefolder: 18 train, 6 val, 6 test images" in imp.stderr
    forget = run_script(
        "main_forget.py", *common, "--mask", tmp_path / "imp" / "1model_SA_best.pth.tar", "--unlearn", "FT", "--unlearn_epochs", "1",
        "--class_to_replace", "2", "--save_dir", tmp_path / "ft",
    )  # fmt: skip
    assert forget.returncode == 0, forget.stderr
    result = load_checkpoint(tmp_path / "ft" / "FTeval_result.pth.tar")
    assert result["accuracy"]["forget"] >= 0 and not load_checkpoint(tmp_path / "imp" / "1model_SA_best.pth.tar")["args"]["imagenet_arch"]
    import arg_parser

    big = arg_parser.parse_args(["--dataset", "imagefolder", "--arch", "resnet18"])  # default --image_size 224
    small = arg_parser.parse_args(["--dataset", "imagefolder", "--arch", "resnet18", "--image_size", "64"])
    assert big.imagenet_arch and not small.imagenet_arch
