"""Train and test one classifier: python train.py [group=option ...] [key=value ...]."""

import logging
import os
import sys

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig

from mnist_classifier.config import hyperparameters, validate
from mnist_classifier.module import Classifier

log = logging.getLogger(__name__)

# What bad input raises while the run is being built: these become a one-line error.
BAD_INPUT = (ValueError, FileNotFoundError, MisconfigurationException, InstantiationException)


def instantiate_all(group: DictConfig | None) -> list:
    """Instantiate each entry of a callbacks or logger dict; an entry set to null is left out."""
    return [instantiate(entry) for entry in (group or {}).values() if entry is not None]


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    try:
        validate(cfg)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = instantiate(cfg.data)
        classifier = Classifier(
            net=instantiate(cfg.model),
            loss=instantiate(cfg.loss),
            optimizer=instantiate(cfg.optimizer),
            scheduler=instantiate(cfg.scheduler, _convert_="all"),
        )
        # Missing files or a bad split fail here, before the trainer is built.
        datamodule.prepare_data()
        datamodule.setup("fit")
        trainer = instantiate(
            cfg.trainer,
            logger=instantiate_all(cfg.get("logger")),
            callbacks=instantiate_all(cfg.get("callbacks")),
        )
    except BAD_INPUT as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        cause = err.__cause__ if isinstance(err, InstantiationException) and err.__cause__ else err
        sys.exit(f"error: {cause}")

    run_dir = HydraConfig.get().runtime.output_dir
    for logger in trainer.loggers:
        logger.log_hyperparams(hyperparameters(cfg, HydraConfig.get().runtime.choices))

    trainer.fit(classifier, datamodule=datamodule)
    val_acc_best = trainer.callback_metrics.get("val/acc_best")
    checkpoint = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    # Test the best checkpoint; runs without checkpoints (debug=fast) test the final weights.
    test_metrics = trainer.test(classifier, datamodule=datamodule, ckpt_path=checkpoint or None)[0]

    log.info("best val accuracy: %s", f"{val_acc_best:.4f}" if val_acc_best is not None else "n/a")
    log.info("test accuracy:     %.4f", test_metrics["test/acc"])
    log.info("checkpoint:        %s", checkpoint or "none (checkpointing off)")
    log.info("run dir:           %s", run_dir)
    log.info("dashboards:        tensorboard --logdir %s", cfg.paths.log_dir)
    return float(val_acc_best) if val_acc_best is not None else float("nan")


if __name__ == "__main__":
    main()
