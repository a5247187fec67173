"""Train and test one classifier: python train.py [group=option ...] [key=value ...]."""

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, open_dict

from mnist_classifier.checkpoints import resume_point
from mnist_classifier.config import hyperparameters
from mnist_classifier.dashboards import log_hyperparameters, tensorboard_writers
from mnist_classifier.experiment import BAD_INPUT, build, describe

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> dict[str, float]:
    """Returns the run's results, which sweeps rank and optimise: best val accuracy, test accuracy
    and the number of epochs trained."""
    hydra_cfg = HydraConfig.get()
    try:
        ckpt_path, resumed_run = resume_point(
            cfg.ckpt_path, Path(cfg.paths.log_dir), list(hydra_cfg.overrides.task)
        )
        if resumed_run is not None:  # logs and checkpoints go on in the run being resumed
            with open_dict(cfg):
                cfg.paths.output_dir = str(resumed_run)
        datamodule, classifier, trainer = build(cfg, resume_from=ckpt_path)
    except BAD_INPUT as err:
        # In a sweep the job fails and the other jobs go on (the sweep report lists the error).
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or hydra_cfg.mode == RunMode.MULTIRUN:
            raise
        sys.exit(f"error: {describe(err)}")

    run_dir = cfg.paths.output_dir
    if ckpt_path is None:
        log_hyperparameters(trainer, hyperparameters(cfg, hydra_cfg.runtime.choices))
    else:
        log.info("resuming from %s; logs and checkpoints go on in %s", ckpt_path, run_dir)

    try:
        trainer.fit(classifier, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:  # Lightning exits with status 0 here, as if the run had finished
        sys.exit(
            f"error: stopped by SIGTERM; saved {run_dir}/checkpoints/last.ckpt, resume with ckpt_path=last"
        )
    val_acc_best = trainer.callback_metrics.get("val/acc_best")
    checkpoint = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    # Test the best checkpoint; runs without checkpoints (debug=fast) test the final weights.
    test_metrics = trainer.test(
        classifier, datamodule=datamodule, ckpt_path=checkpoint or None, weights_only=True
    )[0]
    results = {
        "val/acc_best": float(val_acc_best) if val_acc_best is not None else float("nan"),
        "test/acc": test_metrics["test/acc"],
        "epochs": trainer.current_epoch,
    }

    if trainer.is_global_zero:  # one summary for a data-parallel run, not one per process
        log.info("best val accuracy: %.4f", results["val/acc_best"])
        log.info("test accuracy:     %.4f", results["test/acc"])
        log.info("checkpoint:        %s", checkpoint or "none (checkpointing off)")
        log.info("run dir:           %s", run_dir)
        if tensorboard_writers(trainer):
            sweeping = hydra_cfg.mode == RunMode.MULTIRUN  # a sweep's runs side by side, or every run
            log.info(
                "dashboards:        tensorboard --logdir %s",
                hydra_cfg.sweep.dir if sweeping else cfg.paths.log_dir,
            )
    return results


if __name__ == "__main__":
    main()
