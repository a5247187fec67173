"""MNIST as in-memory tensors: IDX files -> resized, normalised tensors once -> batches."""

import math
from collections.abc import Iterator
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF
from lightning.pytorch import LightningDataModule
from torch.utils.data import TensorDataset
from torchvision.datasets import MNIST

MNIST_SIZE = 28
NUM_CLASSES = 10
RESIZE_MODES = ("bilinear", "pad")
IDX_UNSIGNED_BYTE = 0x08  # the IDX type code of MNIST's pixels and labels
# The four uncompressed IDX files that torchvision's MNIST reads from <data_dir>/MNIST/raw/.
MNIST_FILES = tuple(Path(url).name.removesuffix(".gz") for url, _ in MNIST.resources)


def check_idx_file(path: Path, shape: tuple[int | None, ...]) -> int:
    """Raise ValueError naming the file unless it is an uncompressed IDX file of unsigned bytes with
    this shape (None: any size) and exactly as many bytes as its header says; return its count.

    torchvision's reader would fail on such files with an assertion or a reshape error, or not at
    all (a longer file), so the header is checked here first.
    """
    header_size = 4 + 4 * len(shape)
    file_size = path.stat().st_size
    with path.open("rb") as file:
        header = file.read(header_size)
    if len(header) < header_size:
        raise ValueError(
            f"{path} is truncated: {file_size} bytes, less than its {header_size}-byte IDX header"
        )
    magic = int.from_bytes(header[:4], "big")
    expected_magic = IDX_UNSIGNED_BYTE << 8 | len(shape)
    if magic != expected_magic:
        raise ValueError(
            f"{path} is not an MNIST IDX file: its magic number is 0x{magic:08x}, "
            f"expected 0x{expected_magic:08x} (unsigned bytes, {len(shape)} dimensions)"
        )
    sizes = tuple(int.from_bytes(header[i : i + 4], "big") for i in range(4, header_size, 4))
    if any(want is not None and got != want for got, want in zip(sizes, shape, strict=True)):
        raise ValueError(f"{path} holds items of shape {sizes[1:]}, expected {shape[1:]}")
    expected_size = header_size + math.prod(sizes)
    if file_size != expected_size:
        problem = "is truncated" if file_size < expected_size else "has bytes beyond its data"
        raise ValueError(
            f"{path} {problem}: {file_size} bytes where its header ({sizes[0]} items) needs {expected_size}"
        )
    return sizes[0]


def to_inputs(images: torch.Tensor, image_size: int, resize: str) -> torch.Tensor:
    """uint8 images [N, 28, 28] -> float images [N, 1, image_size, image_size] in [0, 1]."""
    x = images.unsqueeze(1).float().div_(255)
    if resize == "bilinear":
        return TF.resize(x, [image_size, image_size], TF.InterpolationMode.BILINEAR, antialias=True)
    # LeNet-5 paper style: zero borders around the 28x28 digit, the odd pixel right and bottom.
    before = (image_size - MNIST_SIZE) // 2
    after = image_size - MNIST_SIZE - before
    return TF.pad(x, [before, before, after, after])


class TensorBatches:
    """Batches cut by index from in-memory tensors: what a DataLoader gives, without per-sample work.

    A DataLoader fetches samples one `__getitem__` at a time and collates them, and its sampler
    makes the indices on the CPU; here one permutation per epoch is drawn on the tensors' own
    device (a GPU keeps the whole data set and never copies a batch from the host). Each process
    of a data-parallel run takes its own shard of every epoch: training shards are cut to equal
    sizes, so every process steps the same number of times; evaluation shards keep every image
    once, so metrics reduced across processes equal a single-process evaluation.
    """

    def __init__(
        self,
        dataset: TensorDataset,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.images, self.labels = dataset.tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.skip = 0  # batches of the next epoch to leave out: trained before the run was resumed
        count = len(self.labels)
        self.shard_size = count // world_size if shuffle else len(range(rank, count, world_size))

    # The DataLoader attributes Lightning reads: it calls `loader.sampler.set_epoch(epoch)` at the
    # start of every epoch, and looks for a batch sampler when it checks evaluation for shuffling.
    batch_sampler = None

    @property
    def sampler(self) -> "TensorBatches":
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.shard_size // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device = self.labels.device
        count = len(self.labels)
        if self.shuffle:
            # The same permutation in every process: seeded by seed and epoch, not by process.
            generator = torch.Generator(device).manual_seed(self.seed + self.epoch)
            order = torch.randperm(count, generator=generator, device=device)
            shard = order[self.rank :: self.world_size][: self.shard_size]
        else:
            shard = torch.arange(self.rank, count, self.world_size, device=device)
        batches, self.skip = shard.split(self.batch_size)[self.skip :], 0
        for index in batches:
            yield self.images[index], self.labels[index]


class MNISTDataModule(LightningDataModule):
    """MNIST's official 60k/10k split with a fixed, seeded validation split cut from the 60k.

    The images are read, resized and normalised once in `setup`, so batches are cut from
    tensors: no PIL and no per-sample transform in the training loop. The normalisation uses the
    mean and std of the training split (after resizing, so padding is accounted for). The loaders
    put the tensors on the trainer's device and shard them over its processes.
    """

    def __init__(
        self,
        data_dir: str | Path,
        image_size: int = 32,
        resize: str = "bilinear",
        val_size: int = 5000,
        split_seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        shuffle_seed: int = 0,
        download: bool = True,
    ) -> None:
        super().__init__()
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize={resize!r} is unknown: choose one of {', '.join(RESIZE_MODES)}")
        min_size = MNIST_SIZE if resize == "pad" else 1
        if image_size < min_size:
            raise ValueError(
                f"image_size={image_size} is too small for resize={resize}: it must be >= {min_size}"
            )
        for name, size in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if size < 1:
                raise ValueError(f"{name}={size} is invalid: it must be >= 1")
        if val_size < 1:
            raise ValueError(f"val_size={val_size} is invalid: it must be >= 1")
        self.data_dir = Path(data_dir)
        self.image_size = image_size
        self.resize = resize
        self.val_size = val_size
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.shuffle_seed = shuffle_seed
        self.download = download
        self.mean: float | None = None
        self.std: float | None = None
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "MNIST" / "raw"

    def missing_files(self) -> list[str]:
        return [name for name in MNIST_FILES if not (self.raw_dir / name).is_file()]

    def prepare_data(self) -> None:
        """Make sure the IDX files are there, downloading them with torchvision if allowed."""
        if not self.missing_files():
            return
        reason = "download is off (data.download=false)"
        if self.download:
            try:
                for train in (True, False):
                    MNIST(self.data_dir, train=train, download=True)
            except (OSError, RuntimeError) as err:
                reason = "the download failed: " + str(err).strip().splitlines()[0]
        missing = self.missing_files()
        if missing:
            raise FileNotFoundError(
                f"MNIST is not in {self.raw_dir} and {reason}. Put the four files "
                f"{', '.join(MNIST_FILES)} there (missing: {', '.join(missing)}), or point "
                "data.data_dir or the MNIST_DATA_DIR environment variable at a folder with MNIST/raw/"
            )

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", "validate", None) and self.train_set is None:
            self._setup_train_and_val()
        if stage in ("test", None) and self.test_set is None:
            if self.mean is None:  # normalise with the training statistics, as in fit
                self._setup_train_and_val()
            images, labels = self._read(train=False)
            self.test_set = TensorDataset(self._normalize(images), labels)

    def _setup_train_and_val(self) -> None:
        images, labels = self._read(train=True)
        count = len(labels)
        if self.val_size >= count:
            raise ValueError(
                f"val_size={self.val_size} is too large: it must be smaller than the {count} training images"
            )
        order = torch.randperm(count, generator=torch.Generator().manual_seed(self.split_seed))
        val_index, train_index = order[: self.val_size], order[self.val_size :]
        train_images, val_images = images[train_index], images[val_index]
        self.mean, self.std = train_images.mean().item(), train_images.std().item()
        self.train_set = TensorDataset(self._normalize(train_images), labels[train_index])
        self.val_set = TensorDataset(self._normalize(val_images), labels[val_index])

    def _read(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        # MNIST_FILES is in torchvision's order: training images and labels, then test images and labels.
        images_file, labels_file = (
            self.raw_dir / name for name in (MNIST_FILES[:2] if train else MNIST_FILES[2:])
        )
        image_count = check_idx_file(images_file, (None, MNIST_SIZE, MNIST_SIZE))
        label_count = check_idx_file(labels_file, (None,))
        if image_count != label_count:
            raise ValueError(
                f"{images_file} holds {image_count} images but {labels_file} {label_count} labels"
            )
        official = MNIST(self.data_dir, train=train, download=False)
        if official.targets.max() >= NUM_CLASSES:
            raise ValueError(
                f"{labels_file} holds label {int(official.targets.max())}: MNIST's labels are 0 to 9"
            )
        return to_inputs(official.data, self.image_size, self.resize), official.targets

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        # In place: every caller passes a fresh tensor, and the training images take ~225 MB.
        return TF.normalize(images, [self.mean], [self.std], inplace=True)

    # Lightning keeps these in checkpoints: the normalisation a trained model expects, for predict.
    def state_dict(self) -> dict[str, float | None]:
        return {"mean": self.mean, "std": self.std}

    def load_state_dict(self, state: dict[str, float | None]) -> None:
        self.mean, self.std = state["mean"], state["std"]

    def _loader(self, dataset: TensorDataset | None, shuffle: bool) -> TensorBatches:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a data loader")
        rank, world_size, device = 0, 1, torch.device("cpu")
        if self.trainer is not None:
            rank, world_size = self.trainer.global_rank, self.trainer.world_size
            device = self.trainer.strategy.root_device
        on_device = TensorDataset(*(tensor.to(device) for tensor in dataset.tensors))
        # Evaluation keeps no activations for a backward pass: larger batches, fewer steps.
        batch_size = self.batch_size if shuffle else self.eval_batch_size
        return TensorBatches(on_device, batch_size, shuffle, self.shuffle_seed, rank, world_size)

    def train_dataloader(self) -> TensorBatches:
        loader = self._loader(self.train_set, shuffle=True)
        if self.trainer is not None and self.trainer.fit_loop.restarting:
            # Resumed from a checkpoint taken mid-epoch: Lightning restores how many batches of the
            # epoch were done but would start the loader again; go on after them, in the same order.
            done = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
            loader.skip = done if done < len(loader) else 0
        return loader

    def val_dataloader(self) -> TensorBatches:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        return self._loader(self.test_set, shuffle=False)
