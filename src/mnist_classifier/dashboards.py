"""TensorBoard dashboards beyond the curves: what the model gets wrong, what it sees, how runs compare.

Each callback writes to the run's TensorBoard loggers and does nothing without one. Images are
drawn at most once per validation epoch; the per-batch work is a confusion-matrix update.
"""

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams
from torchmetrics.classification import MulticlassConfusionMatrix
from torchvision.utils import make_grid

from mnist_classifier.module import Batch

# The metrics the HParams tab shows beside each run's hyperparameters (their last logged values).
HPARAMS_METRICS = ("val/acc_best", "val/acc", "val/loss", "test/acc", "test/loss")


def tensorboard_writers(trainer: Trainer) -> list[SummaryWriter]:
    """The run's TensorBoard writers; none in the other processes of a data-parallel run."""
    if not trainer.is_global_zero:
        return []
    return [logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


@rank_zero_only
def log_hyperparameters(
    trainer: Trainer, params: Mapping[str, Any], metrics: Iterable[str] = HPARAMS_METRICS
) -> None:
    """Record the run's hyperparameters in every logger, and declare to TensorBoard's HParams tab
    the metrics to show beside them, without the placeholder values Lightning would log for them."""
    for logger in trainer.loggers:
        logger.log_hyperparams(dict(params))
    for writer in tensorboard_writers(trainer):
        for summary in hparams(dict(params), dict.fromkeys(metrics, 0.0)):  # the values are unused
            writer.file_writer.add_summary(summary)


CELL = 36  # pixels a side of a confusion-matrix cell


def confusion_image(counts: torch.Tensor, title: str) -> torch.Tensor:
    """The confusion matrix as an RGB image [3, H, W] (uint8) for both views: each cell coloured by
    its share of the true class's row (the row-normalised matrix) and labelled with its count;
    empty cells stay blank. Drawn with PIL: matplotlib took 0.1-0.25 s a validation epoch here,
    mostly laying out text, which is more than a validation pass."""
    counts = counts.cpu()
    classes = len(counts)
    shares = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    colours = (colormaps["Blues"](shares.numpy())[..., :3] * 255).round().astype("uint8")
    font = ImageFont.load_default(size=12)
    left, top = 46, 28  # room for the class axis and the title
    side = classes * CELL
    image = Image.new("RGB", (left + side + 8, top + side + 40), "white")
    draw = ImageDraw.Draw(image)
    draw.text((left + side / 2, 14), title, fill="black", font=font, anchor="mm")
    for true in range(classes):
        for predicted in range(classes):
            x, y = left + predicted * CELL, top + true * CELL
            draw.rectangle((x, y, x + CELL - 1, y + CELL - 1), fill=tuple(colours[true, predicted].tolist()))
            if counts[true, predicted]:
                colour = "white" if shares[true, predicted] > 0.5 else "black"
                draw.text((x + CELL / 2, y + CELL / 2), str(int(counts[true, predicted])), colour, font, "mm")
    for index in range(classes):
        middle = index * CELL + CELL / 2
        draw.text((left + middle, top + side + 10), str(index), fill="black", font=font, anchor="mm")
        draw.text((left - 10, top + middle), str(index), fill="black", font=font, anchor="mm")
    draw.text((left + side / 2, top + side + 28), "predicted class", fill="black", font=font, anchor="mm")
    axis_label = Image.new("RGB", (side, 16), "white")
    ImageDraw.Draw(axis_label).text((side / 2, 8), "true class", fill="black", font=font, anchor="mm")
    image.paste(axis_label.rotate(90, expand=True), (4, top))
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


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
        self.found: list[tuple[torch.Tensor, int, int, float]] = []

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
            writer.add_figure("test/misclassified", self._figure(), trainer.global_step)

    def _figure(self) -> Figure:
        rows = -(-len(self.found) // self.columns)
        figure = Figure(figsize=(1.6 * self.columns, 1.9 * rows))
        axes = figure.subplots(rows, self.columns, squeeze=False)
        for axis in axes.flat:
            axis.axis("off")
        for axis, (image, label, prediction, probability) in zip(axes.flat, self.found, strict=False):
            axis.imshow(image.numpy(), cmap="gray")
            axis.set_title(f"{label} → {prediction} ({probability:.2f})", fontsize=10)
        figure.suptitle("misclassified test digits: true → predicted (probability)")
        figure.tight_layout()
        return figure


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
        if every_n_steps < 0:
            raise ValueError(
                f"every_n_steps={every_n_steps} is invalid: it must be >= 0 (0 turns histograms off)"
            )
        self.every_n_steps = every_n_steps

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        if not self.every_n_steps or trainer.global_step % self.every_n_steps:
            return
        for writer in tensorboard_writers(trainer):
            for name, parameter in pl_module.named_parameters():
                writer.add_histogram(f"weights/{name}", parameter, trainer.global_step)
                if parameter.grad is not None:
                    writer.add_histogram(f"gradients/{name}", parameter.grad, trainer.global_step)
