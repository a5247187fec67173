"""Classifier: the LightningModule that trains any backbone with a configurable loss and optimizer."""

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import nn
from torch.optim import Optimizer
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy

Batch = tuple[torch.Tensor, torch.Tensor]
OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]


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
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: Mapping[str, Any] | None = None,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.net = net
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_config = scheduler
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_best = MaxMetric()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def _loss_and_logits(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch
        logits = self(images)
        return self.loss(logits, labels), logits

    def on_train_start(self) -> None:
        # The sanity-check batches that Lightning validates before training are no result.
        self.val_acc_best.reset()

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, logits = self._loss_and_logits(batch)
        self.train_acc(logits, batch[1])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, logits = self._loss_and_logits(batch)
        self.val_acc.update(logits, batch[1])
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self.val_acc_best(self.val_acc.compute())
        best = self.val_acc_best.compute()
        self.log("val/acc_best", best, prog_bar=True)
        # TensorBoard's HParams tab ranks runs by hp_metric.
        self.log("hp_metric", best)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        loss, logits = self._loss_and_logits(batch)
        self.test_acc.update(logits, batch[1])
        self.log("test/loss", loss)
        self.log("test/acc", self.test_acc)

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
