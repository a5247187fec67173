"""The LightningDataModule: a data set's IDX files -> resized, normalised tensors once -> batches."""

from pathlib import Path
from typing import Any

import torch
import torchvision.transforms.v2.functional as TF
from lightning.pytorch import LightningDataModule
from torch import nn

from mnist_classifier.batches import Batch, TensorBatches
from mnist_classifier.datasets import DataSet, download, missing_files, not_there, read_split
from mnist_classifier.errors import BadInput
from mnist_classifier.preprocessing import to_inputs


class MNISTDataModule(LightningDataModule):
    """A data set in MNIST's IDX layout (`dataset`, declared by its YAML in conf/data/) with its
    official training/test split, and a validation set cut from the training images by a fixed
    seed, the same in every run.

    The images are read, resized and normalised once in `setup`, so batches are cut from tensors:
    no PIL, no per-sample transform, no worker processes. The normalisation uses `mean` and `std`
    when given, else those of the training split (after resizing, so padding is accounted for).
    The loaders put the tensors on the trainer's device and shard them over its processes.
    `augment`, a module called as augment(images, step), distorts each training batch once it is
    on that device.
    """

    def __init__(
        self,
        data_dir: str | Path,
        dataset: DataSet,
        image_size: int = 32,
        resize: str = "bilinear",
        val_size: int = 5000,
        split_seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        shuffle_seed: int = 0,
        download: bool = True,
        mean: float | None = None,
        std: float | None = None,
        augment: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.dataset = dataset
        self.image_size = image_size
        self.resize = resize
        self.val_size = val_size
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.shuffle_seed = shuffle_seed
        self.download = download
        self.augment = augment
        self.given_mean, self.given_std = mean, std
        self.mean: float | None = None
        self.std: float | None = None
        self.train_set: Batch | None = None
        self.val_set: Batch | None = None
        self.test_set: Batch | None = None
        self.train_batches: TensorBatches | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        return self.dataset.classes

    def prepare_data(self) -> None:
        """Make sure the IDX files are there, downloading them with torchvision if allowed."""
        if not missing_files(self.data_dir, self.dataset):
            return
        reason = (
            download(self.data_dir, self.dataset)
            if self.download
            else "download is off (data.download=false)"
        )
        if missing := missing_files(self.data_dir, self.dataset):
            raise not_there(self.data_dir, self.dataset, reason, missing)

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", "validate", None) and self.train_set is None:
            self._setup_train_and_val()
        if stage in ("test", None) and self.test_set is None:
            if self.mean is None:  # normalise with the training statistics, as in fit
                self._setup_train_and_val()
            images, labels = read_split(self.data_dir, self.dataset, train=False)
            self.test_set = self.inputs(images), labels

    def _setup_train_and_val(self) -> None:
        images, labels = read_split(self.data_dir, self.dataset, train=True)
        count = len(labels)
        if self.val_size >= count:
            raise BadInput(
                f"data.val_size={self.val_size} is invalid: it must be smaller than the {count} training "
                "images"
            )
        order = torch.randperm(count, generator=torch.Generator().manual_seed(self.split_seed))
        val_index, train_index = order[: self.val_size], order[self.val_size :]
        train_images = to_inputs(images[train_index], self.image_size, self.resize)
        self.mean = train_images.mean().item() if self.given_mean is None else self.given_mean
        self.std = train_images.std().item() if self.given_std is None else self.given_std
        self.train_set = self._normalize(train_images), labels[train_index]
        self.val_set = self.inputs(images[val_index]), labels[val_index]

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images [N, 28, 28] as the model sees them: resized and normalised."""
        return self._normalize(to_inputs(images, self.image_size, self.resize))

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        # In place: every caller passes a fresh tensor, and the training images are the largest one.
        return TF.normalize(images, [self.mean], [self.std], inplace=True)

    # Lightning keeps these in checkpoints, so a resumed run normalises as the first one did.
    def state_dict(self) -> dict[str, float | None]:
        return {"mean": self.mean, "std": self.std}

    def load_state_dict(self, state: dict[str, float | None]) -> None:
        self.mean, self.std = state["mean"], state["std"]

    def _loader(self, tensors: Batch | None, shuffle: bool) -> TensorBatches:
        if tensors is None:
            raise RuntimeError("call setup() before asking for a data loader")
        rank, world_size, device = 0, 1, torch.device("cpu")
        if self.trainer is not None:
            rank, world_size = self.trainer.global_rank, self.trainer.world_size
            device = self.trainer.strategy.root_device
        images, labels = (tensor.to(device) for tensor in tensors)
        # Evaluation keeps no activations for a backward pass: larger batches, fewer steps.
        batch_size = self.batch_size if shuffle else self.eval_batch_size
        return TensorBatches(images, labels, batch_size, shuffle, self.shuffle_seed, rank, world_size)

    def train_dataloader(self) -> TensorBatches:
        self.train_batches = self._loader(self.train_set, shuffle=True)
        return self.train_batches

    def val_dataloader(self) -> TensorBatches:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        return self._loader(self.test_set, shuffle=False)

    def training(self, batch: Any) -> bool:
        """Whether a batch is a training batch (the model graph's example input, a lone tensor,
        passes through the transfer hooks too)."""
        return self.trainer is not None and self.trainer.training and not isinstance(batch, torch.Tensor)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # The loaders cut batches on the trainer's device already: Lightning's own move would walk
        # the batch every step to find nothing to move.
        if isinstance(batch, tuple) and all(tensor.device == device for tensor in batch):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Lightning fetches one batch ahead: counting here counts the batches training has taken.
        if self.training(batch) and self.train_batches is not None:
            self.train_batches.taken += 1
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.augment is None or not self.training(batch):
            return batch
        images, labels = batch
        return self.augment(images, self.trainer.global_step), labels
