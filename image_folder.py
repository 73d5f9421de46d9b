"""ImageNet (or any ImageFolder tree) streamed from disk: the data path that does not fit in memory.

The small datasets are held as uint8 tensors (`dataset.ImageSet`, `dataset.TensorLoader`).
ImageNet is read where it lies, `<data>/train/<wnid>/*.JPEG` and `<data>/val/<wnid>/*.JPEG`
(the validation images sorted into class folders, as `valprep.sh` leaves them), and each
batch is decoded in `--num_workers` worker processes. A `FolderSet` is the list of files and
labels; a `StreamLoader` has the interface of a TensorLoader (seeded shuffling whose state
a checkpoint keeps, `in_order`, `subset`), so every method and metric takes either.

Augmentation is ImageNet's standard one (RandomResizedCrop 224 and a horizontal flip for
training; Resize 256 and CenterCrop 224 for evaluation), drawn per image from a seed made of
the epoch's draw from the loader's generator and the image's position in the loader: the same
image gets the same crop whatever the number of workers (or, later, of processes).
Normalisation is the model's first layer, as for the other datasets. Nothing under --data is
written.
"""

import os
from dataclasses import dataclass

import numpy as np
import torch

import distributed
from dataset import TensorLoader, rank_share
from utils import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP, RESIZE = 224, 256
SEED_MODULUS = 2**62  # per-image seeds stay inside torch.manual_seed's range


def train_transform():
    from torchvision import transforms

    return transforms.Compose([transforms.RandomResizedCrop(CROP), transforms.RandomHorizontalFlip(), transforms.ToTensor()])


def eval_transform():
    from torchvision import transforms

    return transforms.Compose([transforms.Resize(RESIZE), transforms.CenterCrop(CROP), transforms.ToTensor()])


@dataclass
class FolderSet:
    """Image files and their labels, decoded when a batch asks for them.

    Has what the rest of the code reads of an `ImageSet`: `labels`, `len()`, `to()` (a no-op:
    images reach the device batch by batch) and `select()`.
    """

    paths: np.ndarray  # the files, as bytes: one buffer, which forked workers share instead of copying
    labels: torch.Tensor  # int64, N
    num_workers: int = 0  # decoding processes of every loader over this set

    def __len__(self):
        return len(self.labels)

    def to(self, device):
        return self

    def select(self, positions):
        positions = np.asarray(positions, dtype=np.int64)
        return FolderSet(self.paths[positions], self.labels[torch.from_numpy(positions)], self.num_workers)

    def path(self, position):
        return os.fsdecode(self.paths[position])


class _Decoded(torch.utils.data.Dataset):
    """Position i of a FolderSet decoded and transformed; random transforms seeded by (base_seed, i)."""

    def __init__(self, data, transform, base_seed=None):
        self.data, self.transform, self.base_seed = data, transform, base_seed

    def __len__(self):
        return len(self.data)

    def __getitem__(self, position):
        from PIL import Image

        with Image.open(self.data.path(position)) as img:
            img = img.convert("RGB")
        if self.base_seed is None:
            return self.transform(img), self.data.labels[position]
        # torchvision's random transforms draw from torch's global generator: seed it for this
        # image; in the main process (no workers), leave the run's own state as it was.
        # (the CPU generator only: torch.manual_seed would reseed the GPUs' too)
        seed = (self.base_seed + position) % SEED_MODULUS
        if torch.utils.data.get_worker_info() is not None:
            torch.default_generator.manual_seed(seed)
            return self.transform(img), self.data.labels[position]
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return self.transform(img), self.data.labels[position]


def _worker_init(worker_id):
    """A decoding worker dies quietly on SIGTERM (Slurm, torchrun): its parent stops the run and says how to resume."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class StreamLoader(TensorLoader):
    """Batches of `(images float [0,1], labels)` decoded from a FolderSet, in worker processes.

    A TensorLoader (its indices, seeded generator, `in_order`, `subset`, `split_for_rank`)
    whose batches are read from disk: `augment` is a torchvision transform for training;
    None means the evaluation transform.
    """

    def __iter__(self):
        order = self.indices
        if self.shuffle:
            order = order[torch.randperm(len(order), generator=self.generator)]
        base_seed = None
        if self.augment is not None:
            base_seed = int(torch.randint(SEED_MODULUS, (1,), generator=self.generator))
        decoded = _Decoded(self.data, self.augment or eval_transform(), base_seed)
        batches = [order[start:stop] for start, stop in self.batch_bounds()]
        if self.part is not None:  # only this rank's share is decoded; the seeds make it what one process would see
            rank, world = self.part
            batches = [batch[slice(*rank_share(len(batch), rank, world))] for batch in batches if len(batch) >= world]
        loader = torch.utils.data.DataLoader(
            decoded,
            batch_sampler=[batch.tolist() for batch in batches],
            num_workers=self.data.num_workers,
            pin_memory=torch.cuda.is_available(),
            worker_init_fn=_worker_init,
        )
        yield from loader

    def batch_block(self, start, stop):
        """Batches start..stop-1 of this unshuffled loader, as a loader of its own (the per-image seeds keep their crops)."""
        if self.shuffle:
            raise ValueError("batch_block splits an unshuffled loader")
        block = self.indices[start * self.batch_size : stop * self.batch_size]
        return StreamLoader(self.data, block, self.batch_size, shuffle=False, augment=self.augment, seed=self.seed)


# ---------------------------------------------------------------- reading the folders


def _layout(data_dir):
    return f"{os.path.join(data_dir, 'train')}/<wnid>/*.JPEG and {os.path.join(data_dir, 'val')}/<wnid>/*.JPEG"


def list_imagenet(data_dir):
    """The training and validation listings: ((paths, labels, class_to_idx), (paths, labels, class_to_idx))."""
    train = read_folder(os.path.join(data_dir, "train"), "training", data_dir)
    return train, read_folder(os.path.join(data_dir, "val"), "validation", data_dir, train[2])


def read_folder(folder, what, data_dir, class_to_idx=None):
    """(paths, labels, class_to_idx) of one split; one line naming the layout when it is not there."""
    from torchvision.datasets import ImageFolder

    if not os.path.isdir(folder):
        raise UserError(f"imagenet: {folder} not found (expected {_layout(data_dir)}); set --data to the folder holding train/ and val/")
    try:
        found = ImageFolder(folder, loader=lambda path: path)  # the loader is never called: only the listing is kept
    except FileNotFoundError as err:
        message = str(err).strip().splitlines()[0]
        raise UserError(f"imagenet: {what} folder {folder}: {message} (expected {_layout(data_dir)})") from None
    if class_to_idx is not None:
        extra = sorted(set(found.classes) - set(class_to_idx))
        if extra:
            raise UserError(
                f"imagenet: {folder} has class folders that train/ has not ({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''}); "
                "the val images must be sorted into the training classes' folders (valprep.sh)"
            )
        names = found.classes
        samples = [(path, class_to_idx[names[label]]) for path, label in found.samples]
    else:
        samples, class_to_idx = found.samples, found.class_to_idx
    paths = np.array([os.fsencode(path) for path, _ in samples])
    labels = torch.tensor([label for _, label in samples], dtype=torch.long)
    return paths, labels, class_to_idx


def load_imagenet(data_dir, num_workers=0):
    """(train, val, num_classes) FolderSets of an ImageNet tree; test is val, as in the original's ImageNet path.
    Under torchrun rank 0 alone lists the folders and sends the listing to the others."""
    (train_paths, train_labels, class_to_idx), (val_paths, val_labels, _) = distributed.from_rank_0(lambda: list_imagenet(data_dir))
    train = FolderSet(train_paths, train_labels, num_workers)
    val = FolderSet(val_paths, val_labels, num_workers)
    return train, val, len(class_to_idx)
