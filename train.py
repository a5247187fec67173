"""Train and test one classifier: python train.py [group=option ...] [key=value ...]."""

import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mnist_classifier.config import hyperparameters
from mnist_classifier.dashboards import log_hyperparameters
from mnist_classifier.experiment import BAD_INPUT, build, describe

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> dict[str, float]:
    """Returns the run's results, which sweeps rank and optimise: best val accuracy, test accuracy
    and the number of epochs trained."""
    try:
        datamodule, classifier, trainer = build(cfg)
    except BAD_INPUT as err:
        # In a sweep the job fails and the other jobs go on (the sweep report lists the error).
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        sys.exit(f"error: {describe(err)}")

    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    log_hyperparameters(trainer, hyperparameters(cfg, hydra_cfg.runtime.choices))

    trainer.fit(classifier, datamodule=datamodule)
    val_acc_best = trainer.callback_metrics.get("val/acc_best")
    checkpoint = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    # Test the best checkpoint; runs without checkpoints (debug=fast) test the final weights.
    test_metrics = trainer.test(classifier, datamodule=datamodule, ckpt_path=checkpoint or None)[0]
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
        sweeping = hydra_cfg.mode == RunMode.MULTIRUN  # a sweep's runs side by side, or every run
        log.info(
            "dashboards:        tensorboard --logdir %s",
            hydra_cfg.sweep.dir if sweeping else cfg.paths.log_dir,
        )
    return results


if __name__ == "__main__":
    main()
