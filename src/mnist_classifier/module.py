"""Classifier: the LightningModule that trains any net with a configurable loss and optimizer."""

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.strategies import Strategy
from torch import nn
from torch.optim import Optimizer
from torchmetrics import MaxMetric, MeanMetric, Metric
from torchmetrics.classification import MulticlassAccuracy

from mnist_classifier.batches import Batch

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]


def memory_layout(channels_last: bool) -> torch.memory_format:
    """The layout a net's weights and images are kept in: channels-last, or torch's default."""
    return torch.channels_last if channels_last else torch.contiguous_format


class BatchMean(MeanMetric):
    """The mean of per-batch values weighted by batch size, without the NaN check by which
    MeanMetric reads each value back to the host (its nan_strategy="disable" would also drop the
    weights: it counts every value once)."""

    def update(self, value: torch.Tensor, weight: int) -> None:
        # In place: `+=` would set the attribute anew, through a module's slow __setattr__.
        self.mean_value.add_(value * weight)
        self.weight.add_(weight)


class TrainingSums(nn.Module):
    """A training epoch's summed loss (weighted by batch size) and right predictions, kept on the net's
    device, and its count of images: a step adds to them with a few tensor operations and reads
    nothing back to the host (a torchmetrics update costs several times that in Python, every step);
    the epoch's end reads them once, summed over the processes of a data-parallel run."""

    def __init__(self) -> None:
        super().__init__()
        # Not in checkpoints: an epoch's sums start afresh with the epoch, as a resumed run's do.
        self.register_buffer("loss", torch.zeros(()), persistent=False)
        self.register_buffer("right", torch.zeros((), dtype=torch.long), persistent=False)
        self.images = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.loss.add_(loss, alpha=len(labels))
        self.right.add_((logits.argmax(dim=1) == labels).sum())
        self.images += len(labels)

    def means(self, strategy: Strategy) -> dict[str, torch.Tensor]:
        """The epoch's mean loss and accuracy over every process's images; the sums then start afresh."""
        sums = torch.stack([self.loss, self.right.to(self.loss.dtype), self.loss.new_tensor(self.images)])
        loss, right, images = strategy.reduce(sums, reduce_op="sum")
        self.loss.zero_()
        self.right.zero_()
        self.images = 0
        return {"train/loss_epoch": loss / images, "train/acc": right / images}


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
        image_size: the side of the input images (Lightning's model summary and graph use an example).
        channels_last: keep the net's weights and the images in channels-last memory layout
            (faster convolutions: oneDNN's kernels on CPUs, tensor cores on GPUs).
        compile: compile the net with `torch.compile` (at its first batch).
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
    ) -> None:
        super().__init__()
        self.example_input_array = torch.zeros(1, 1, image_size, image_size)
        self.memory_format = memory_layout(channels_last)
        self.net = net.to(memory_format=self.memory_format)
        if compile:
            # In place and lazy: compiles at the first batch, and the state dict keeps its keys.
            self.net.compile()
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_config = scheduler
        # Updated every batch, computed once an epoch: no host sync per batch (validate_args and a NaN
        # check would each read a tensor back).
        self.train_sums = TrainingSums()
        self.val_loss, self.test_loss = BatchMean(), BatchMean()
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.test_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.test_acc_per_class = MulticlassAccuracy(num_classes, average=None, validate_args=False)
        # Saved in checkpoints (torchmetrics states are not, by default), so a resumed run keeps it.
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)
        # What every checkpoint carries beside Lightning's state (train.py puts the inference record
        # here): a module hook, where a callback's hooks would be called at every step.
        self.checkpoint_entries: dict[str, Any] = {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.contiguous(memory_format=self.memory_format))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint.update(self.checkpoint_entries)

    def on_train_start(self) -> None:
        # A new fit starts its best afresh; a resumed one keeps the best its checkpoint holds.
        if self.trainer.ckpt_path is None:
            self.val_acc_best.reset()

    def logs_this_step(self) -> bool:
        """Whether the trainer writes this training step's values to its loggers: every
        `log_every_n_steps` optimizer steps. A step value logged on another step would only cost."""
        trainer = self.trainer
        return bool(trainer.fast_dev_run) or (trainer.global_step + 1) % trainer.log_every_n_steps == 0

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = self.loss(logits, labels)
        self.train_sums.add(loss.detach(), logits.detach(), labels)
        if self.logs_this_step():
            self.log("train/loss_step", loss.detach(), prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        for name, value in self.train_sums.means(self.trainer.strategy).items():
            self.log(name, value)

    def log_epoch(self, metrics: Mapping[str, Metric], prog_bar: bool = False) -> None:
        """Each metric's value over the epoch, logged; the metric then starts afresh."""
        for name, metric in metrics.items():
            self.log(name, metric.compute(), prog_bar=prog_bar)
            metric.reset()

    def _evaluate(self, batch: Batch, loss_mean: BatchMean, accuracy: MulticlassAccuracy) -> torch.Tensor:
        """The batch's logits; its loss and accuracy go to the epoch's means."""
        images, labels = batch
        logits = self(images)
        loss_mean.update(self.loss(logits, labels), weight=len(labels))
        accuracy.update(logits, labels)
        return logits

    def validation_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, self.val_loss, self.val_acc)  # the logits, for the dashboards

    def on_validation_epoch_end(self) -> None:
        accuracy = self.val_acc.compute()
        self.log_epoch({"val/loss": self.val_loss, "val/acc": self.val_acc}, prog_bar=True)
        if not self.trainer.sanity_checking:  # the batches validated before training are no result
            self.val_acc_best.update(accuracy)
            self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)

    def test_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        logits = self._evaluate(batch, self.test_loss, self.test_acc)
        self.test_acc_per_class.update(logits, batch[1])
        return logits  # for the dashboards

    def on_test_epoch_end(self) -> None:
        for label, accuracy in enumerate(self.test_acc_per_class.compute()):
            self.log(f"test/acc_class_{label}", accuracy)
        self.test_acc_per_class.reset()
        self.log_epoch({"test/loss": self.test_loss, "test/acc": self.test_acc})

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
