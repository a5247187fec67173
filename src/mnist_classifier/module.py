"""Classifier: the LightningModule that trains any backbone with a configurable loss and optimizer."""

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import nn
from torch.optim import Optimizer
from torchmetrics import MaxMetric, Metric
from torchmetrics.classification import MulticlassAccuracy

Batch = tuple[torch.Tensor, torch.Tensor]
OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]


class SampleMean(Metric):
    """The mean over samples of a per-sample value, updated with each batch's sum and size.

    torchmetrics' MeanMetric and MulticlassAccuracy cost 70 to 150 µs an update on this project's
    CPU (more than 1% of a LeNet step, 5% of an MLP step), and MeanMetric's NaN check syncs a GPU
    every update; this is two in-place additions. Summed across processes.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, total: torch.Tensor, count: int) -> None:
        # In place: `+=` would set the attribute again, through nn.Module's slow __setattr__.
        self.total.add_(total)
        self.count.add_(count)

    def compute(self) -> torch.Tensor:
        return self.total / self.count


class Classifier(LightningModule):
    """Trains `net` (images -> logits) with `loss(logits, labels)`.

    Args:
        net: any module that maps a batch of images to class logits.
        loss: a module called as loss(logits, labels).
        optimizer: a factory that builds the optimizer from the parameters
            (a `functools.partial` of a torch optimizer, as Hydra's `_partial_: true` gives).
        scheduler: None, or a Lightning lr-scheduler config: a dict whose "scheduler" is a
            factory called with the optimizer, beside Lightning's keys ("interval", "frequency",
            "monitor", ...). A factory with an unset `total_steps` (OneCycleLR) is given the
            run's total number of optimizer steps.
        num_classes: the number of classes for the accuracy metrics.
        image_size: the side of the input images (for the model graph in TensorBoard).
        channels_last: keep the net's weights and the images in channels-last memory layout
            (faster convolutions on GPUs with tensor cores).
        compile: compile the net with `torch.compile` (at its first batch).
        augment: None, or a module called as augment(images, step) that distorts the images of
            each training batch on their device (validation and test batches are left alone).
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: Mapping[str, Any] | None = None,
        num_classes: int = 10,
        image_size: int = 32,
        channels_last: bool = False,
        compile: bool = False,
        augment: nn.Module | None = None,
    ) -> None:
        super().__init__()
        # One blank image: Lightning traces the model graph for TensorBoard with it.
        self.example_input_array = torch.zeros(1, 1, image_size, image_size)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(memory_format=self.memory_format)
        if compile:
            # In place and lazy: compiles at the first batch, and the state dict keeps its keys.
            self.net.compile()
        self.loss = loss
        self.augment = augment
        self.optimizer_factory = optimizer
        self.scheduler_config = scheduler
        # Each stage's mean loss and accuracy accumulate per batch (summed across processes) and
        # are logged once per epoch.
        self.train_loss, self.val_loss, self.test_loss = SampleMean(), SampleMean(), SampleMean()
        self.train_acc, self.val_acc, self.test_acc = SampleMean(), SampleMean(), SampleMean()
        # validate_args=False: the checks cost more than the update.
        self.test_acc_per_class = MulticlassAccuracy(num_classes, average=None, validate_args=False)
        # Saved in checkpoints (torchmetrics states are not, by default), so a resumed run keeps it.
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets _current_fx_name (a hook's name) before and after every hook call, ~50
        # times a step; nn.Module's __setattr__ checks each time for a parameter, buffer or
        # submodule (0.5M instructions a step, 4% of an MLP step), which a string never is.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = images.contiguous(memory_format=self.memory_format)
        if torch.jit.is_tracing():
            # TensorBoard's model graph is traced, and tracing cannot enter a compiled net: trace
            # the net's own forward, which is what the compiled net runs.
            return self.net.forward(images)
        return self.net(images)

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        # Training batches only; the model graph's example input passes through here too, alone.
        if self.augment is None or not self.trainer.training or isinstance(batch, torch.Tensor):
            return batch
        images, labels = batch
        return self.augment(images, self.global_step), labels

    def _step(
        self, batch: Batch, loss_mean: SampleMean, accuracy: SampleMean
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's loss and logits; its summed loss and correct predictions go to the metrics."""
        images, labels = batch
        logits = self(images)
        loss = self.loss(logits, labels)
        loss_mean.update(loss.detach() * len(labels), len(labels))
        accuracy.update((logits.detach().argmax(dim=1) == labels).sum(), len(labels))
        return loss, logits

    def on_train_start(self) -> None:
        # A new fit starts its best from scratch; a resumed one keeps the best its checkpoint holds.
        if self.trainer.ckpt_path is None:
            self.val_acc_best.reset()

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, _ = self._step(batch, self.train_loss, self.train_acc)
        # A self.log call costs as much Python as 3% of a LeNet step, so the step's loss is logged
        # only on the steps whose values the loggers write (every trainer.log_every_n_steps).
        every = self.trainer.log_every_n_steps
        if every and (self.global_step + 1) % every == 0:
            self.log("train/loss_step", loss, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/loss_epoch", self.train_loss)
        self.log("train/acc_epoch", self.train_acc, prog_bar=True)

    def validation_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        _, logits = self._step(batch, self.val_loss, self.val_acc)
        return logits  # for the dashboard callbacks

    def on_validation_epoch_end(self) -> None:
        self.log("val/loss", self.val_loss, prog_bar=True)
        self.log("val/acc", self.val_acc, prog_bar=True)
        if not self.trainer.sanity_checking:  # the batches validated before training are no result
            self.val_acc_best(self.val_acc.compute())
            self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)

    def test_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        _, logits = self._step(batch, self.test_loss, self.test_acc)
        self.test_acc_per_class.update(logits, batch[1])
        return logits  # for the dashboard callbacks

    def on_test_epoch_end(self) -> None:
        self.log("test/loss", self.test_loss)
        self.log("test/acc", self.test_acc)
        for digit, accuracy in enumerate(self.test_acc_per_class.compute()):
            self.log(f"test/acc_class_{digit}", accuracy)
        self.test_acc_per_class.reset()

    def configure_optimizers(self) -> Optimizer | dict[str, Any]:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_config is None:
            return optimizer
        scheduler_config = dict(self.scheduler_config)
        make_scheduler = scheduler_config.pop("scheduler")
        extra = {}
        wants_run_length = "total_steps" in inspect.signature(make_scheduler).parameters
        if wants_run_length and getattr(make_scheduler, "keywords", {}).get("total_steps") is None:
            extra["total_steps"] = self.trainer.estimated_stepping_batches
        scheduler = make_scheduler(optimizer, **extra)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **scheduler_config}}
