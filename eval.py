"""Test a checkpoint on the official test set: python eval.py ckpt_path=PATH [data.data_dir=DIR].

The model, data settings and loss are those of the run that wrote the checkpoint (its
.hydra/config.yaml); the data dir and the trainer's accelerator are this command's.
"""

import logging
import os
import sys
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from mnist_classifier.experiment import BAD_INPUT, describe, trained_classifier

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> dict[str, float]:
    try:
        if cfg.ckpt_path is None:
            raise ValueError(
                "ckpt_path is not set: python eval.py ckpt_path=<run dir>/checkpoints/<file>.ckpt"
            )
        path = Path(cfg.ckpt_path).resolve()
        classifier, run, checkpoint = trained_classifier(path)
        run.data.data_dir = cfg.data.data_dir  # the data of this machine, prepared as in the run
        datamodule = instantiate(run.data)
        # The training normalisation the checkpoint keeps: no need to read the training images.
        datamodule.load_state_dict(checkpoint[type(datamodule).__qualname__])
        datamodule.prepare_data()
        datamodule.setup("test")
    except BAD_INPUT as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        sys.exit(f"error: {describe(err)}")

    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator, devices=1, logger=False, enable_checkpointing=False
    )
    # The classifier already holds the checkpoint's weights: no second load.
    metrics = trainer.test(classifier, datamodule=datamodule)[0]
    log.info("checkpoint:    %s (epoch %d, step %d)", path, checkpoint["epoch"], checkpoint["global_step"])
    log.info("test loss:     %.4f", metrics["test/loss"])
    log.info("test accuracy: %.4f", metrics["test/acc"])
    digits = sorted(key for key in metrics if key.startswith("test/acc_class_"))
    log.info("per class:     %s", "  ".join(f"{key.rsplit('_', 1)[1]}: {metrics[key]:.4f}" for key in digits))
    return metrics


if __name__ == "__main__":
    main()
