"""What a checkpoint carries: the inference record a run writes into every checkpoint it saves.

Beside Lightning's state, each checkpoint holds a record of what inference needs (the net and its
settings, the data set and its classes, the image size, resize and normalisation, the project
version), so that a checkpoint copied alone to another machine is enough for eval.py, predict.py,
export.py and serve.py. Reading one is mnist_classifier.checkpoint_files' (no Lightning); which
checkpoint a run resumes from is mnist_classifier.resume's.
"""

from dataclasses import asdict
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_classifier.checkpoint_files import package_version
from mnist_classifier.data import MNISTDataModule


def model_record(model: DictConfig) -> dict[str, Any]:
    """A model config as the record keeps it: its `_target_` and arguments, resolved."""
    arguments = OmegaConf.to_container(model, resolve=True)
    assert isinstance(arguments, dict)
    return arguments


def inference_record(model: DictConfig, datamodule: MNISTDataModule) -> dict:
    """What inference needs: the run's model config, and its data set, resize and normalisation."""
    return {
        "version": package_version(),
        "model": model_record(model),
        "dataset": asdict(datamodule.dataset) | {"classes": list(datamodule.dataset.classes)},
        "image_size": datamodule.image_size,
        "resize": datamodule.resize,
        "mean": datamodule.mean,
        "std": datamodule.std,
    }
