"""TensorBoard's HParams tab: each run's hyperparameters beside its final metrics."""

from collections.abc import Mapping
from typing import Any

from lightning.pytorch import Trainer

from mnist_classifier.dashboards.callbacks import tensorboard_writers

PREFIX = "hparams/"  # the tags of the final values, apart from the curves they end


def log_hyperparameters(trainer: Trainer, params: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
    """Record the run's hyperparameters with its final metrics, in the run's own TensorBoard run
    (`run_name="."`: SummaryWriter.add_hparams would make a sub-run otherwise). Written when the run
    ends, so the table holds real values; SummaryWriter writes each value as a scalar too, so they
    are tagged `hparams/<metric>`, not to add a point to the metric's own curve."""
    values = {PREFIX + key: value for key, value in metrics.items() if value == value}  # NaN: not measured
    for writer in tensorboard_writers(trainer):
        writer.add_hparams(dict(params), values, run_name=".", global_step=trainer.global_step)
