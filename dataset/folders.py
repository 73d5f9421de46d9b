"""Class-folder trees streamed from disk: the data path that does not fit in memory.

The small datasets are held as uint8 tensors (`dataset/tensors.py`). A tree of class
folders, `<data>/train/<class>/*` and `<data>/val/<class>/*` (ImageNet's layout once
`valprep.sh` has sorted its validation images; any ImageFolder tree, `--dataset
imagefolder`), is read where it lies, and each batch is decoded in `--num_workers` worker
processes. A `FolderSet` is the list of files and labels; a `StreamLoader` has the
interface of a TensorLoader (seeded shuffling whose state a checkpoint keeps, `in_order`,
`subset`), so every method and metric takes either.

Augmentation is ImageNet's standard one at the set's crop (RandomResizedCrop and a
horizontal flip for training; Resize to crop x 256/224 and CenterCrop for evaluation:
256 and 224 on ImageNet), drawn per image from a seed made of the epoch's draw from the
loader's generator and the image's position in the loader: the same image gets the same
crop whatever the number of workers (or, later, of processes).
Workers send uint8 images (a quarter of float32's bytes), pinned when the run is on a GPU;
the loader copies them without blocking and scales them to [0, 1] on the device, the same
numbers torchvision's `ToTensor` gives. A loader keeps its workers from one pass to the next
(every epoch, every evaluation). Normalisation is the model's first layer, as for the other
datasets. Nothing under --data is written.
"""

import os
from dataclasses import dataclass

import numpy as np
import torch

import distributed
from distributed import rank_share
from errors import UserError
from options import Option

from .tensors import TensorLoader

CROP = 224  # ImageNet's: the side the model sees
SEED_MODULUS = 2**62  # per-image seeds stay inside torch.manual_seed's range

NUM_WORKERS = Option(
    "num_workers", 4, "processes decoding images (the datasets held in memory as tensors use none)", type=int,
    check=lambda n: None if n >= 0 else f"--num_workers {n}: must be 0 (decode in the main process) or more",
)  # fmt: skip


def resize_for(crop):
    """The side an evaluation image is resized to before its centre crop: 256 for 224, as ImageNet's."""
    return round(crop * 256 / 224)


def train_transform(crop=CROP):
    from torchvision import transforms

    return transforms.Compose([transforms.RandomResizedCrop(crop), transforms.RandomHorizontalFlip(), transforms.PILToTensor()])


def eval_transform(crop=CROP):
    """uint8 C x H x W; `to_unit_range` on the device makes it what `ToTensor` would have."""
    from torchvision import transforms

    return transforms.Compose([transforms.Resize(resize_for(crop)), transforms.CenterCrop(crop), transforms.PILToTensor()])


def to_unit_range(images):
    """uint8 images as float in [0, 1]: `ToTensor`'s arithmetic (x / 255 in float32)."""
    return images.float().div_(255)


@dataclass
class FolderSet:
    """Image files and their labels, decoded when a batch asks for them.

    Has what the rest of the code reads of an `ImageSet`: `labels`, `len()`, `to()` (a no-op:
    images reach the device batch by batch) and `select()`.
    """

    paths: np.ndarray  # the files, as bytes: one buffer, which forked workers share instead of copying
    labels: torch.Tensor  # int64, N
    num_workers: int = 0  # decoding processes of every loader over this set
    device: torch.device = torch.device("cpu")  # where the batches go (the files stay where they are)
    crop: int = CROP  # the side of the images the loaders give

    def __len__(self):
        return len(self.labels)

    def to(self, device):
        return FolderSet(self.paths, self.labels, self.num_workers, torch.device(device), self.crop)

    def select(self, positions):
        positions = np.asarray(positions, dtype=np.int64)
        return FolderSet(self.paths[positions], self.labels[torch.from_numpy(positions)], self.num_workers, self.device, self.crop)

    def path(self, position):
        return os.fsdecode(self.paths[position])


class _Decoded(torch.utils.data.Dataset):
    """Key (i, base_seed): position i of a FolderSet decoded and transformed, random transforms
    seeded by (base_seed, i) (base_seed None: no randomness). The seed travels with the key, so
    that workers kept from one pass to the next get each pass's seed."""

    def __init__(self, data, transform):
        self.data, self.transform = data, transform

    def __len__(self):
        return len(self.data)

    def __getitem__(self, key):
        from PIL import Image

        position, base_seed = key
        with Image.open(self.data.path(position)) as img:
            img = img.convert("RGB")
        if base_seed is None:
            return self.transform(img), self.data.labels[position]
        # torchvision's random transforms draw from torch's global generator: seed it for this
        # image; in the main process (no workers), leave the run's own state as it was.
        # (the CPU generator only: torch.manual_seed would reseed the GPUs' too)
        seed = (base_seed + position) % SEED_MODULUS
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


class _PassBatches:
    """The batch sampler of a kept DataLoader: the batches of the pass under way (set before each)."""

    def __init__(self):
        self.batches = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


class _KeptWorkers:
    """A DataLoader whose workers live as long as the loader (`persistent_workers`), and its
    sampler; `busy` while a pass runs (a second pass at the same time gets workers of its own)."""

    def __init__(self, decoded, num_workers, pin_memory):
        self.sampler, self.busy = _PassBatches(), False
        self.loader = torch.utils.data.DataLoader(
            decoded,
            batch_sampler=self.sampler,
            num_workers=num_workers,
            pin_memory=pin_memory,
            worker_init_fn=_worker_init,
            persistent_workers=num_workers > 0,
        )


class StreamLoader(TensorLoader):
    """Batches of `(images float [0,1], labels)` decoded from a FolderSet, in worker processes.

    A TensorLoader (its indices, seeded generator, `in_order`, `subset`, `split_for_rank`)
    whose batches are read from disk: `augment` is a torchvision transform for training;
    None means the evaluation transform. The batches arrive on the FolderSet's device.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._kept = {}  # split (rank, world) or None -> _KeptWorkers; shared by split_for_rank's views
        self._blocks = {}  # (start, stop) -> the batch_block loader, kept with its workers

    def _workers(self, decoded):
        """This split's kept workers; new ones for this pass alone when a pass of it is under way."""
        kept = self._kept.get(self.part)
        if kept is None or kept.busy:
            fresh = _KeptWorkers(decoded, self.data.num_workers, self.data.device.type == "cuda")
            kept = self._kept.setdefault(self.part, fresh) if kept is None else fresh
        return kept

    def __iter__(self):
        order = self.indices
        if self.shuffle:
            order = order[torch.randperm(len(order), generator=self.generator)]
        base_seed = None
        if self.augment is not None:
            base_seed = int(torch.randint(SEED_MODULUS, (1,), generator=self.generator))
        batches = [order[start:stop] for start, stop in self.batch_bounds()]
        if self.part is not None:  # only this rank's share is decoded; the seeds make it what one process would see
            rank, world = self.part
            batches = [batch[slice(*rank_share(len(batch), rank, world))] for batch in batches if len(batch) >= world]
        decoded = _Decoded(self.data, self.augment or eval_transform(self.data.crop))
        kept = self._workers(decoded)
        kept.sampler.batches = [[(position, base_seed) for position in batch.tolist()] for batch in batches]
        kept.busy, device = True, self.data.device
        try:
            for images, labels in kept.loader:
                yield to_unit_range(images.to(device, non_blocking=True)), labels.to(device, non_blocking=True)
        finally:
            kept.busy = False

    def batch_block(self, start, stop):
        """Batches start..stop-1 of this unshuffled loader, as a loader of its own (the per-image seeds keep their crops)."""
        if self.shuffle:
            raise ValueError("batch_block splits an unshuffled loader")
        if (start, stop) not in self._blocks:
            block = self.indices[start * self.batch_size : stop * self.batch_size]
            self._blocks[start, stop] = StreamLoader(self.data, block, self.batch_size, shuffle=False, augment=self.augment, seed=self.seed)
        return self._blocks[start, stop]


# ---------------------------------------------------------------- reading the folders


@dataclass(frozen=True)
class Tree:
    """How a dataset's class-folder tree is named in its messages: the dataset, a class folder and its files."""

    name: str = "imagenet"
    files: str = "<wnid>/*.JPEG"
    sorting: str = "valprep.sh"  # what sorts the validation images into class folders

    def layout(self, data_dir):
        return f"{os.path.join(data_dir, 'train')}/{self.files} and {os.path.join(data_dir, 'val')}/{self.files}"


def list_class_folders(data_dir, tree=Tree()):
    """The training and validation listings: ((paths, labels, class_to_idx), (paths, labels, class_to_idx))."""
    train = read_folder(os.path.join(data_dir, "train"), "training", data_dir, tree=tree)
    return train, read_folder(os.path.join(data_dir, "val"), "validation", data_dir, train[2], tree=tree)


def read_folder(folder, what, data_dir, class_to_idx=None, tree=Tree()):
    """(paths, labels, class_to_idx) of one split; one line naming the layout when it is not there."""
    from torchvision.datasets import ImageFolder

    if not os.path.isdir(folder):
        raise UserError(
            f"{tree.name}: {folder} not found (expected {tree.layout(data_dir)}); set --data to the folder holding train/ and val/"
        )
    try:
        found = ImageFolder(folder, loader=lambda path: path)  # the loader is never called: only the listing is kept
    except FileNotFoundError as err:
        message = str(err).strip().splitlines()[0]
        raise UserError(f"{tree.name}: {what} folder {folder}: {message} (expected {tree.layout(data_dir)})") from None
    if class_to_idx is not None:
        extra = sorted(set(found.classes) - set(class_to_idx))
        if extra:
            raise UserError(
                f"{tree.name}: {folder} has class folders that train/ has not ({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''}); "
                f"the val images must be sorted into the training classes' folders ({tree.sorting})"
            )
        names = found.classes
        samples = [(path, class_to_idx[names[label]]) for path, label in found.samples]
    else:
        samples, class_to_idx = found.samples, found.class_to_idx
    paths = np.array([os.fsencode(path) for path, _ in samples])
    labels = torch.tensor([label for _, label in samples], dtype=torch.long)
    return paths, labels, class_to_idx


def load_class_folders(data_dir, num_workers=0, tree=Tree(), crop=CROP):
    """(train, val, num_classes) FolderSets of a class-folder tree (test is val, as in the original's ImageNet path).
    Under torchrun rank 0 alone lists the folders and sends the listing to the others."""
    listing = distributed.from_rank_0(lambda: list_class_folders(data_dir, tree))
    (train_paths, train_labels, class_to_idx), (val_paths, val_labels, _) = listing
    train = FolderSet(train_paths, train_labels, num_workers, crop=crop)
    val = FolderSet(val_paths, val_labels, num_workers, crop=crop)
    return train, val, len(class_to_idx)
