"""What a run logs to TensorBoard beyond the curves: the Lightning callback that logs what the model
gets wrong and what it sees (the HParams tab's entry is every tracker's: mnist_classifier.tracking).
It writes to the run's TensorBoard loggers and does nothing without one. Images are drawn at most
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


class Dashboards(Callback):
    """The dashboards, each turned off by its setting's 0 (or false):

    - confusion matrices: of the validation set every validation epoch and of the test set at the
      end, counts coloured by row-normalised share;
    - misclassified digits: a grid of the first `misclassified_digits` test digits the model gets
      wrong, each titled true -> predicted (probability);
    - training inputs: the first `training_inputs` images of the first training batch as the model
      sees them (after resize, normalisation and distortion), once per run, so that a preprocessing
      mistake shows;
    - histograms of every weight and its gradient every `histograms_every_n_steps` optimizer steps.

    One callback, not one each: Lightning calls every hook of every callback at every step, and a
    training step's hooks here return after one check.
    """

    def __init__(
        self,
        num_classes: int = 10,
        confusion_matrices: bool = True,
        misclassified_digits: int = 32,
        training_inputs: int = 64,
        histograms_every_n_steps: int = 0,
        columns: int = 8,
    ) -> None:
        stages = ("val", "test") if confusion_matrices else ()
        self.matrices = {
            stage: MulticlassConfusionMatrix(num_classes, validate_args=False) for stage in stages
        }
        self.misclassified_digits = misclassified_digits
        self.training_inputs = training_inputs
        self.histograms_every_n_steps = histograms_every_n_steps
        self.columns = columns
        self.found: list[Misclassified] = []
        self.inputs_logged = not training_inputs

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for matrix in self.matrices.values():
            matrix.to(pl_module.device)

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Batch, batch_idx: int
    ) -> None:
        if self.inputs_logged:
            return
        self.inputs_logged = True
        # Scaled to [0, 1] over the whole grid, so the relative values are the model's own.
        images = batch[0][: self.training_inputs].float().cpu()
        grid = make_grid(images, nrow=self.columns, normalize=True, pad_value=1.0)
        for writer in tensorboard_writers(trainer):
            writer.add_image("train/inputs", grid, trainer.global_step)

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        if not self.histograms_every_n_steps or trainer.global_step % self.histograms_every_n_steps:
            return
        for writer in tensorboard_writers(trainer):
            for name, parameter in pl_module.named_parameters():
                writer.add_histogram(f"weights/{name}", parameter, trainer.global_step)
                if parameter.grad is not None:
                    writer.add_histogram(f"gradients/{name}", parameter.grad, trainer.global_step)

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.matrices and not trainer.sanity_checking:
            self.matrices["val"].update(outputs, batch[1])

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.matrices and not trainer.sanity_checking:
            self.log_confusion("val", f"validation set, epoch {trainer.current_epoch}", trainer)

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
        if self.matrices:
            self.matrices["test"].update(outputs, batch[1])
        if len(self.found) >= self.misclassified_digits:
            return
        images, labels = batch
        probabilities, predictions = outputs.softmax(dim=1).max(dim=1)
        wrong = (predictions != labels).nonzero().flatten()[: self.misclassified_digits - len(self.found)]
        self.found += [
            (images[i, 0].cpu(), int(labels[i]), int(predictions[i]), float(probabilities[i]))
            for i in wrong.tolist()
        ]

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.matrices:
            self.log_confusion("test", "test set", trainer)
        if not self.found:
            return
        for writer in tensorboard_writers(trainer):
            writer.add_image(
                "test/misclassified", misclassified_image(self.found, self.columns), trainer.global_step
            )

    def log_confusion(self, stage: str, title: str, trainer: Trainer) -> None:
        matrix = self.matrices[stage]
        counts = matrix.compute()  # every process computes: the counts are summed across them
        matrix.reset()
        for writer in tensorboard_writers(trainer):
            writer.add_image(f"{stage}/confusion_matrix", confusion_image(counts, title), trainer.global_step)
