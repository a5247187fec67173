"""What a run logs to TensorBoard beyond the curves: the Lightning callbacks that log what the model
gets wrong and what it sees (the HParams tab's entry is every tracker's: mnist_classifier.tracking).
Each writes to the run's TensorBoard loggers and does nothing without one. Images are drawn at most
once per validation epoch; the per-batch work is a confusion-matrix update.
"""

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.tensorboard import SummaryWriter
from torchmetrics.classification import MulticlassConfusionMatrix
from torchvision.utils import make_grid

from mnist_classifier.batches import Batch
from mnist_classifier.dashboards.drawing import Misclassified, confusion_image, misclassified_image


def tensorboard_writers(trainer: Trainer) -> list[SummaryWriter]:
    """The run's TensorBoard writers; none in the other processes of a data-parallel run."""
    if not trainer.is_global_zero:
        return []
    return [logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


class ConfusionMatrices(Callback):
    """The confusion matrix of the validation set every validation epoch and of the test set at the
    end: counts, coloured by row-normalised share."""

    def __init__(self, num_classes: int = 10) -> None:
        self.matrices = {
            stage: MulticlassConfusionMatrix(num_classes, validate_args=False) for stage in ("val", "test")
        }

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for matrix in self.matrices.values():
            matrix.to(pl_module.device)

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.sanity_checking:
            self.matrices["val"].update(outputs, batch[1])

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.matrices["test"].update(outputs, batch[1])

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._log("val", f"validation set, epoch {trainer.current_epoch}", trainer)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._log("test", "test set", trainer)

    def _log(self, stage: str, title: str, trainer: Trainer) -> None:
        matrix = self.matrices[stage]
        counts = matrix.compute()  # every process computes: the counts are summed across them
        matrix.reset()
        for writer in tensorboard_writers(trainer):
            writer.add_image(f"{stage}/confusion_matrix", confusion_image(counts, title), trainer.global_step)


class MisclassifiedDigits(Callback):
    """A grid of test digits the model gets wrong, each titled true -> predicted (probability)."""

    def __init__(self, count: int = 32, columns: int = 8) -> None:
        self.count = count
        self.columns = columns
        self.found: list[Misclassified] = []

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.found = []

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if len(self.found) >= self.count:
            return
        images, labels = batch
        probabilities, predictions = outputs.softmax(dim=1).max(dim=1)
        wrong = (predictions != labels).nonzero().flatten()[: self.count - len(self.found)].tolist()
        self.found += [
            (images[i, 0].cpu(), int(labels[i]), int(predictions[i]), float(probabilities[i])) for i in wrong
        ]

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.found:
            return
        for writer in tensorboard_writers(trainer):
            writer.add_image(
                "test/misclassified", misclassified_image(self.found, self.columns), trainer.global_step
            )


class TrainingInputs(Callback):
    """The first training batch as the model sees it (after resize and normalisation), once per run,
    so that a preprocessing mistake shows."""

    def __init__(self, count: int = 64) -> None:
        self.count = count
        self.logged = False

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Batch, batch_idx: int
    ) -> None:
        if self.logged:
            return
        self.logged = True
        # Scaled to [0, 1] over the whole grid, so the relative values are the model's own.
        grid = make_grid(batch[0][: self.count].float().cpu(), nrow=8, normalize=True, pad_value=1.0)
        for writer in tensorboard_writers(trainer):
            writer.add_image("train/inputs", grid, trainer.global_step)


class ParameterHistograms(Callback):
    """Histograms of every weight and its gradient every `every_n_steps` optimizer steps; 0 is off."""

    def __init__(self, every_n_steps: int = 0) -> None:
        self.every_n_steps = every_n_steps

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        if not self.every_n_steps or trainer.global_step % self.every_n_steps:
            return
        for writer in tensorboard_writers(trainer):
            for name, parameter in pl_module.named_parameters():
                writer.add_histogram(f"weights/{name}", parameter, trainer.global_step)
                if parameter.grad is not None:
                    writer.add_histogram(f"gradients/{name}", parameter.grad, trainer.global_step)
