"""The objects of one run, built from the composed Hydra config: data, classifier, trainer."""

import sys
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from omegaconf import DictConfig

from mnist_classifier.checkpoints import InferenceRecord, check_same_model, load_checkpoint
from mnist_classifier.config import validate
from mnist_classifier.data import MNISTDataModule
from mnist_classifier.errors import reading_input
from mnist_classifier.module import Classifier


def instantiate_all(group: DictConfig | None) -> list:
    """Instantiate each entry of a callbacks or logger dict; an entry set to null is left out."""
    return [instantiate(entry) for entry in (group or {}).values() if entry is not None]


def instantiate_classifier(cfg: DictConfig) -> Classifier:
    """The classifier of a composed config: its net, loss, optimizer and scheduler from their groups."""
    return instantiate(
        cfg.classifier,
        net=instantiate(cfg.model),
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler, _convert_="all"),
    )


def build(cfg: DictConfig, resume_from: Path | None = None) -> tuple[MNISTDataModule, Classifier, L.Trainer]:
    """Validate and seed, then the data (read and set up for fit), the classifier and the trainer;
    whatever the config, files or checkpoint hold that cannot work is refused here, as bad input.

    The progress bar is drawn only on a terminal; in a log, `EpochLog` writes a line per epoch.
    Every checkpoint gets the inference record (checkpoints.InferenceRecord).
    """
    with reading_input():
        validate(cfg)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = instantiate(cfg.data, augment=instantiate(cfg.augment))
        classifier = instantiate_classifier(cfg)
        if resume_from is not None:
            check_same_model(load_checkpoint(resume_from), classifier, resume_from)
        datamodule.prepare_data()
        datamodule.setup("fit")
        loggers, callbacks = instantiate_all(cfg.get("logger")), instantiate_all(cfg.get("callbacks"))
    if not loggers:  # `~logger`: the learning-rate monitor would refuse to start, with nothing to log to
        callbacks = [callback for callback in callbacks if not isinstance(callback, LearningRateMonitor)]
    terminal = sys.stderr.isatty()
    if not terminal:
        callbacks = [callback for callback in callbacks if not isinstance(callback, ProgressBar)]
    callbacks.append(InferenceRecord(cfg.model, cfg.data))
    trainer = instantiate(cfg.trainer, logger=loggers, callbacks=callbacks, enable_progress_bar=terminal)
    return datamodule, classifier, trainer
