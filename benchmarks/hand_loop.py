"""The loop a person writes by hand, which the benchmarks hold train.py's Lightning path against:
forward, loss, backward, step over the data module's in-memory tensors (distorted by the same
augmentation when given), then a validation pass counting the right answers, as train.py validates
every epoch. The model, loss and optimizer are built from the same config as train.py's.
"""

import itertools
import time
from collections.abc import Callable, Iterable

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from mnist_classifier.batches import Batch
from mnist_classifier.data import MNISTDataModule
from mnist_classifier.module import memory_layout


class HandLoop:
    def __init__(
        self,
        cfg: DictConfig,
        device: torch.device,
        train_batches: Callable[[], Iterable[Batch]],
        val_batches: Callable[[], Iterable[Batch]],
        augment: nn.Module | None = None,
    ) -> None:
        L.seed_everything(cfg.seed, verbose=False)
        self.memory_format = memory_layout(cfg.classifier.channels_last)  # as train.py's classifier
        self.model = instantiate(cfg.model).to(device, memory_format=self.memory_format)
        self.loss_fn = instantiate(cfg.loss)
        self.optimizer = instantiate(cfg.optimizer)(self.model.parameters())
        self.device, self.train_batches, self.val_batches = device, train_batches, val_batches
        self.augment = augment
        self.step = 0

    def train(self, steps: int | None = None) -> None:
        """Train on the epoch's batches (the first `steps` of them)."""
        self.model.train()
        for images, labels in itertools.islice(self.train_batches(), steps):
            images, labels = (
                images.to(self.device, memory_format=self.memory_format, non_blocking=True),
                labels.to(self.device, non_blocking=True),
            )
            if self.augment is not None:
                images = self.augment(images, self.step)
            self.step += 1
            loss = self.loss_fn(self.model(images), labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()

    def validate(self) -> int:
        """The validation images the model gets right."""
        self.model.eval()
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        with torch.no_grad():
            for images, labels in self.val_batches():
                images, labels = (
                    images.to(self.device, memory_format=self.memory_format, non_blocking=True),
                    labels.to(self.device, non_blocking=True),
                )
                correct += (self.model(images).argmax(1) == labels).sum()
        return int(correct)  # waits for the device, as the end of an epoch does

    def epoch(self) -> float:
        """Train one epoch and validate; its seconds."""
        start = time.perf_counter()
        self.train()
        self.validate()
        return time.perf_counter() - start


def hand_loop_on_tensors(
    cfg: DictConfig,
    datamodule: MNISTDataModule,
    device: torch.device,
    limit: int | None = None,
    augment: nn.Module | None = None,
) -> HandLoop:
    """A hand loop over the data module's tensors (at most `limit` batches an epoch), its batches
    distorted by `augment` if given."""
    train_images, train_labels = (t.to(device) for t in datamodule.train_set)
    val_images, val_labels = (t.to(device) for t in datamodule.val_set)
    size, eval_size = cfg.data.batch_size, cfg.data.eval_batch_size

    def train_batches() -> Iterable[Batch]:
        order = torch.randperm(len(train_labels), device=device).split(size)[:limit]
        return ((train_images[index], train_labels[index]) for index in order)

    def val_batches() -> Iterable[Batch]:
        starts = range(0, len(val_labels), eval_size)[:limit]
        return ((val_images[i : i + eval_size], val_labels[i : i + eval_size]) for i in starts)

    return HandLoop(cfg, device, train_batches, val_batches, augment)
