"""One run of train.py: the data, classifier and trainer built from the composed config; fit, the
best checkpoint tested, and what the run prints: a line per epoch where no progress bar is drawn,
and the summary at the end (library messages that say nothing to a user are silenced).
"""

import logging
import math
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.model_summary import summarize
from omegaconf import DictConfig, open_dict

from mnist_classifier.checkpoint_files import RECORD, check_same_model, load_checkpoint
from mnist_classifier.checkpoints import inference_record
from mnist_classifier.config import check_targets, validate
from mnist_classifier.data import MNISTDataModule
from mnist_classifier.errors import reading_input
from mnist_classifier.hyperparameters import hyperparameters
from mnist_classifier.module import Classifier
from mnist_classifier.resume import LAST_FILE, resume_point
from mnist_classifier.selection import Selection
from mnist_classifier.studies import raise_if_pruned
from mnist_classifier.tracker_settings import local_stores_locked
from mnist_classifier.tracking import (
    finish,
    log_files,
    log_results,
    open_runs,
    record_links,
    tracker_commands,
)

log = logging.getLogger("mnist_classifier")

# What a run returns (and a sweep ranks and optimises), and what the HParams tab shows.
RESULTS = ("val/acc_best", "test/acc", "test/loss", "val/acc", "val/loss")


def run(cfg: DictConfig) -> dict[str, float]:
    """Train and test as `cfg` says; the results: best val accuracy, test accuracy and loss, the
    last val accuracy and loss, the epochs trained and the best one."""
    quiet_libraries()
    hydra_cfg = HydraConfig.get()
    with reading_input():
        ckpt_path, resumed_run = resume_point(
            cfg.ckpt_path, Path(cfg.paths.output_dir), Path(cfg.paths.log_dir), list(hydra_cfg.overrides.task)
        )
    if resumed_run is not None:  # logs and checkpoints go on in the run being resumed
        with open_dict(cfg):
            cfg.paths.output_dir = str(resumed_run)
    if hydra_cfg.mode == RunMode.MULTIRUN:  # the command line checked each value; here, the job's mix
        validate(cfg)
    datamodule, classifier, trainer = build(cfg, resume_from=ckpt_path)
    run_dir = Path(cfg.paths.output_dir)
    if ckpt_path is not None:
        log.info("resuming from %s; logs and checkpoints go on in %s", ckpt_path, run_dir)

    selection = Selection.of(cfg)
    selecting = selecting_checkpoint(trainer, selection)
    results: dict[str, float] = {}
    best, failed = "", True
    try:
        fit(trainer, classifier, datamodule, ckpt_path, run_dir)
        raise_if_pruned(trainer.callbacks)
        results |= reached(trainer) | {"val/acc_best": best_validation(trainer, classifier)}
        results[selection.best_key] = best_value(trainer, selection, selecting)
        # The selected checkpoint is tested; without one (checkpointing off), the final weights.
        best = selecting.best_model_path if selecting else ""
        tested = trainer.test(
            classifier, datamodule=datamodule, ckpt_path=best or None, weights_only=True, verbose=False
        )
        results |= {name: value for name, value in tested[0].items() if name in RESULTS}
        results["epochs"] = trainer.current_epoch
        results["best_epoch"] = (
            torch.load(best, weights_only=True)["epoch"] + 1 if best else trainer.current_epoch
        )
        failed = False
    finally:  # a pruned or failed run shows in the trackers too, with what it reached
        results = results or reached(trainer)
        try:
            log_results(trainer, hyperparameters(cfg, hydra_cfg.runtime.choices), results)
            log_files(trainer, tracked_files(hydra_cfg, best))
            record_links(trainer, run_dir)
            sweeping = hydra_cfg.mode == RunMode.MULTIRUN
            commands = tracker_commands(trainer, hydra_cfg.sweep.dir if sweeping else cfg.paths.log_dir)
            finish(trainer, failed)
        except Exception:
            if not failed:
                raise
            # The run's own error is the one to report (and to end a study's trial with).
            log.exception("the trackers could not record this failed run")

    if trainer.is_global_zero:  # one summary for a data-parallel run, not one per process
        shown: dict[str, float | int | str] = {
            f"best {selection.words}": results[selection.best_key],
            "best epoch": f"{results['best_epoch']} of {results['epochs']}",
            "test accuracy": results["test/acc"],
            "checkpoint": best
            or f"none: the final weights were tested (no checkpoint callback monitors {selection.monitor})",
            "run dir": str(run_dir),
        }
        shown |= commands  # TensorBoard: a sweep's runs side by side, or every run
        summary(shown)
    return results


def tracked_files(hydra_cfg: DictConfig, best: str) -> list[tuple[str, Path]]:
    """What the trackers keep of a run, by folder: Hydra's record of its config and command line, and
    the checkpoint it tested."""
    files = [("checkpoints", Path(best))] if best else []
    if hydra_cfg.output_subdir is None:  # Hydra told to keep no record of them
        return files
    config_dir = Path(hydra_cfg.runtime.output_dir, hydra_cfg.output_subdir)
    return [("config", config_dir / "config.yaml"), ("config", config_dir / "overrides.yaml"), *files]


def selecting_checkpoint(trainer: Trainer, selection: Selection) -> ModelCheckpoint | None:
    """The checkpoint callback that keeps the best epoch by the selection metric, if any."""
    return next(
        (
            callback
            for callback in trainer.checkpoint_callbacks
            if callback.monitor == selection.monitor and callback.mode == selection.mode
        ),
        None,
    )


def best_value(trainer: Trainer, selection: Selection, selecting: ModelCheckpoint | None) -> float:
    """The selection metric's best value: the selecting checkpoint's (kept in its state, so a resumed
    run that had nothing left to train has it too), else its last logged value; NaN if never logged."""
    if selecting is not None and selecting.best_model_score is not None:
        return float(selecting.best_model_score)
    return float(trainer.callback_metrics.get(selection.monitor, math.nan))


def best_validation(trainer: Trainer, classifier: Classifier) -> float:
    """The best validation accuracy: this fit's, or, for a resumed run that had nothing left to train,
    the one its checkpoint kept; NaN if it never validated."""
    if "val/acc_best" in trainer.callback_metrics:
        return float(trainer.callback_metrics["val/acc_best"])
    kept = float(classifier.val_acc_best.max_value)
    return kept if math.isfinite(kept) else math.nan


def reached(trainer: Trainer) -> dict[str, float]:
    """The results the trainer's last stage logged; NaN for the others."""
    return {name: float(trainer.callback_metrics.get(name, float("nan"))) for name in RESULTS}


def fit(trainer: Trainer, classifier, datamodule, ckpt_path: Path | None, run_dir: Path) -> None:
    """trainer.fit; a run stopped by SIGTERM or Ctrl-C (which Lightning ends with a bare exit, the
    first with status 0 as if it had finished) is a failure that names its last checkpoint."""
    try:
        with warnings.catch_warnings():
            if ckpt_path is not None:  # a resumed run writes on in its own checkpoint folder: no news
                warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            trainer.fit(classifier, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SystemExit as stop:
        if not (isinstance(stop, SIGTERMException) or trainer.interrupted):
            raise
        how = "SIGTERM" if isinstance(stop, SIGTERMException) else "Ctrl-C"
        raise RuntimeError(
            f"stopped by {how}; saved {run_dir / 'checkpoints' / LAST_FILE}, resume with ckpt_path=last"
        ) from None


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
    """Seed, then the classifier, the data (read and set up for fit) and the trainer. What the
    user's files or checkpoint hold that cannot work is refused as bad input (BadInput) before
    training starts; any other error is a failure.

    The progress bar is drawn only on a terminal; in a log, `RunLog` writes a line per epoch.
    Every checkpoint gets the inference record (checkpoints.inference_record).
    """
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    with reading_input():
        check_targets(cfg)
        augment = instantiate(cfg.augment) if cfg.get("augment") else None
        datamodule = instantiate(cfg.data, augment=augment)
        classifier = instantiate_classifier(cfg)
        if resume_from is not None:
            check_same_model(load_checkpoint(resume_from), classifier, resume_from)
        datamodule.prepare_data()
        datamodule.setup("fit")
        classifier.checkpoint_entries[RECORD] = inference_record(cfg.model, datamodule)
        with local_stores_locked(cfg):
            loggers = instantiate_all(cfg.get("logger"))
            open_runs(loggers)
        callbacks = instantiate_all(cfg.get("callbacks"))
    if not loggers:  # `~logger`: the learning-rate monitor would refuse to start, with nothing to log to
        callbacks = [callback for callback in callbacks if not isinstance(callback, LearningRateMonitor)]
    terminal = sys.stderr.isatty()
    if not terminal:
        callbacks = [callback for callback in callbacks if not isinstance(callback, ProgressBar)]
    trainer = instantiate(cfg.trainer, logger=loggers, callbacks=callbacks, enable_progress_bar=terminal)
    return datamodule, classifier, trainer


# Lightning's start-up lines (which accelerators exist, tips for other products) and its
# "`Trainer.fit` stopped" note: the summary says what matters.
QUIET_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


def quiet_libraries() -> None:
    """Silence the messages of libraries that tell a user nothing about the run. Warnings about the
    user's own settings are kept; these are notes to library developers."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if logging.getLogger().handlers:
        # The `lightning` package gives its logger a console handler of its own, besides passing
        # records on to the root logger's (Hydra's console and run log): each line would show twice.
        # Imported before the root logger had handlers (a run started from Python), its `pytorch`
        # and `fabric` loggers keep theirs and pass nothing on: their lines would miss train.log.
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
    # Lightning calls an API of torch.utils._pytree that torch deprecates: a note to its developers.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # The Graphs tab (logger.tensorboard.log_graph=true, whose config says its tracer is deprecated):
    # torch's advice to switch tracers is for Lightning, and the tracer reads every attribute of the
    # metrics, one that torchmetrics deprecates among them.
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace(_method)?` is deprecated")
    warnings.filterwarnings("ignore", message=r"This property will be removed .* `Metric\.updated_called`")
    # Lightning's model summary sizes weights of a mixed precision at 32 bits, and says so.
    warnings.filterwarnings("ignore", message=r"Precision .* is not supported by the model summary")
    logging.getLogger("lightning.pytorch.loggers.mlflow").addFilter(not_experiment_creation)
    # MLflow's store uses a loader option of SQLAlchemy's that SQLAlchemy deprecates: a note to MLflow.
    warnings.filterwarnings("ignore", message="The ``noload`` loader strategy is deprecated")


def not_experiment_creation(record: logging.LogRecord) -> bool:
    """False for the MLflow logger's warning that it creates the experiment: each command is an
    experiment of its own, so that is no news."""
    return not record.getMessage().endswith("not found. Creating it.")


EPOCH_METRICS = ("train/loss_step", "val/loss", "val/acc", "val/acc_best")


class RunLog(Callback):
    """What a run writes to its log as it trains: the net's summary at the start, and one line per
    validated epoch (the last step's loss, the validation loss and accuracies) when no progress bar
    shows them, e.g. when the output goes to a log file. One callback for both, as Lightning calls
    every hook of every callback at every step: its own ModelSummary would be one more
    (trainer.enable_model_summary is off)."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            log.info("\n%s", summarize(pl_module, max_depth=1))

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Not on_validation_epoch_end: callbacks run that before the module logs val/acc_best.
        if trainer.sanity_checking or trainer.progress_bar_callback is not None or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        shown = ", ".join(f"{name} {float(metrics[name]):.4f}" for name in EPOCH_METRICS if name in metrics)
        total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        log.info("epoch %d%s: %s", trainer.current_epoch + 1, total, shown)


def summary(results: Mapping[str, float | int | str]) -> None:
    """The last lines a run prints: what it reached and where its files are."""
    width = max(map(len, results)) + 1
    for name, value in results.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        log.info("%s %s", f"{name}:".ljust(width), shown)
