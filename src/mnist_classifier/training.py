"""One run of train.py: build from the composed config, fit, test the best checkpoint, summarise."""

import logging
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch import Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, open_dict

from mnist_classifier.config import hyperparameters
from mnist_classifier.console import quiet_libraries, summary
from mnist_classifier.dashboards.callbacks import tensorboard_writers
from mnist_classifier.dashboards.hparams import log_hyperparameters
from mnist_classifier.errors import reading_input
from mnist_classifier.resume import LAST_FILE, resume_point
from mnist_classifier.studies import raise_if_pruned
from mnist_classifier.wiring import build

log = logging.getLogger(__name__)

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
    datamodule, classifier, trainer = build(cfg, resume_from=ckpt_path)
    run_dir = Path(cfg.paths.output_dir)
    if ckpt_path is not None:
        log.info("resuming from %s; logs and checkpoints go on in %s", ckpt_path, run_dir)

    results: dict[str, float] = {}
    try:
        fit(trainer, classifier, datamodule, ckpt_path, run_dir)
        raise_if_pruned(trainer.callbacks)
        results |= reached(trainer)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        # The best checkpoint is tested; runs without checkpoints (debug=fast) test the final weights.
        tested = trainer.test(
            classifier, datamodule=datamodule, ckpt_path=best or None, weights_only=True, verbose=False
        )
        results |= {name: value for name, value in tested[0].items() if name in RESULTS}
        results["epochs"] = trainer.current_epoch
        results["best_epoch"] = (
            torch.load(best, weights_only=True)["epoch"] + 1 if best else trainer.current_epoch
        )
    finally:  # a pruned or failed run shows in the HParams tab too, with what it reached
        results = results or reached(trainer)
        log_hyperparameters(trainer, hyperparameters(cfg, hydra_cfg.runtime.choices), results)

    if trainer.is_global_zero:  # one summary for a data-parallel run, not one per process
        sweeping = hydra_cfg.mode == RunMode.MULTIRUN
        shown: dict[str, float | int | str] = {
            "best val accuracy": results["val/acc_best"],
            "best epoch": f"{results['best_epoch']} of {results['epochs']}",
            "test accuracy": results["test/acc"],
            "checkpoint": best or "none (checkpointing off)",
            "run dir": str(run_dir),
        }
        if tensorboard_writers(trainer):
            # A sweep's runs side by side, or every run.
            shown["dashboards"] = (
                f"tensorboard --logdir {hydra_cfg.sweep.dir if sweeping else cfg.paths.log_dir}"
            )
        summary(shown)
    return results


def reached(trainer: Trainer) -> dict[str, float]:
    """The results the trainer's last stage logged; NaN for the others."""
    return {name: float(trainer.callback_metrics.get(name, float("nan"))) for name in RESULTS}


def fit(trainer: Trainer, classifier, datamodule, ckpt_path: Path | None, run_dir: Path) -> None:
    """trainer.fit; a run stopped by SIGTERM or Ctrl-C (which Lightning ends with a bare exit, the
    first with status 0 as if it had finished) is a failure that names its last checkpoint."""
    try:
        trainer.fit(classifier, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SystemExit as stop:
        if not (isinstance(stop, SIGTERMException) or trainer.interrupted):
            raise
        how = "SIGTERM" if isinstance(stop, SIGTERMException) else "Ctrl-C"
        raise RuntimeError(
            f"stopped by {how}; saved {run_dir / 'checkpoints' / LAST_FILE}, resume with ckpt_path=last"
        ) from None
