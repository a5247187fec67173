"""One run built from the composed Hydra config: the wiring that train.py and the benchmarks share."""

from pathlib import Path
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig

from mnist_classifier.checkpoints import check_same_model, load_checkpoint, run_config
from mnist_classifier.config import validate
from mnist_classifier.data import MNISTDataModule
from mnist_classifier.module import Classifier

# What bad input raises while a run is being built: entry points turn these into a one-line error.
BAD_INPUT = (ValueError, FileNotFoundError, MisconfigurationException, InstantiationException)


def describe(error: BaseException) -> str:
    """One line for an error: the cause that Hydra's instantiate wraps, else the error itself."""
    if isinstance(error, InstantiationException) and error.__cause__ is not None:
        error = error.__cause__
    return " ".join(str(error).split()) or type(error).__name__


def instantiate_all(group: DictConfig | None) -> list:
    """Instantiate each entry of a callbacks or logger dict; an entry set to null is left out."""
    return [instantiate(entry) for entry in (group or {}).values() if entry is not None]


def instantiate_classifier(cfg: DictConfig, **settings: Any) -> Classifier:
    """The classifier of a composed config: its net, loss, optimizer and scheduler from their
    groups; `settings` override the config's `classifier` keys."""
    return instantiate(
        cfg.classifier,
        **settings,
        net=instantiate(cfg.model),
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler, _convert_="all"),
        augment=instantiate(cfg.augment),
    )


def build(cfg: DictConfig, resume_from: Path | None = None) -> tuple[MNISTDataModule, Classifier, L.Trainer]:
    """Validate and seed, then the data (set up for fit), the classifier and the trainer.

    A checkpoint to resume from is checked against the classifier before the trainer is built.
    """
    validate(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    classifier = instantiate_classifier(cfg)
    if resume_from is not None:
        check_same_model(load_checkpoint(resume_from), classifier, resume_from)
    # Missing files or a bad split fail here, before the trainer is built.
    datamodule.prepare_data()
    datamodule.setup("fit")
    loggers, callbacks = instantiate_all(cfg.get("logger")), instantiate_all(cfg.get("callbacks"))
    if not loggers:  # `~logger`: the learning-rate monitor would refuse to start, with nothing to log to
        callbacks = [callback for callback in callbacks if not isinstance(callback, LearningRateMonitor)]
    trainer = instantiate(cfg.trainer, logger=loggers, callbacks=callbacks)
    return datamodule, classifier, trainer


def trained_classifier(checkpoint_path: Path) -> tuple[Classifier, DictConfig, dict[str, Any]]:
    """The classifier a checkpoint holds, built from the config of the run that wrote it and loaded
    with its weights; with that config and the checkpoint itself."""
    checkpoint = load_checkpoint(checkpoint_path)
    run = run_config(checkpoint_path)
    # Uncompiled, whatever the run trained with: evaluating, predicting and exporting (which
    # traces the net) run a few batches, and tracing cannot enter a compiled net.
    classifier = instantiate_classifier(run, compile=False)
    check_same_model(checkpoint, classifier, checkpoint_path)
    classifier.load_state_dict(checkpoint["state_dict"])
    return classifier, run, checkpoint
