"""What a checkpoint carries, and reading one safely.

Every checkpoint a run writes holds, beside Lightning's state, a record of what inference needs
(the net and its settings, the data set and its classes, the image size, resize and
normalisation, the project version), so that a checkpoint copied alone to another machine is
enough for eval.py, predict.py, export.py and serve.py (mnist_classifier.inference). Which
checkpoint a run resumes from is mnist_classifier.resume's.
"""

import importlib
from collections.abc import Iterable
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mnist_classifier.config import different_weights
from mnist_classifier.data import MNISTDataModule
from mnist_classifier.errors import BadInput, existing_file, first_line, one_line
from mnist_classifier.trust import how_to_trust, trusted_modules, untrusted

RECORD = "mnist_classifier"  # the checkpoint's key for the inference record


def package_version() -> str:
    return metadata.version("mnist-classifier")


def model_record(model: DictConfig) -> dict[str, Any]:
    """A model config as the record keeps it: its `_target_` and arguments, resolved."""
    arguments = OmegaConf.to_container(model, resolve=True)
    assert isinstance(arguments, dict)
    return arguments


def targets(node: Any) -> list[str]:
    """Every `_target_` in a nested config."""
    if isinstance(node, dict):
        own = [str(node["_target_"])] if "_target_" in node else []
        return own + [target for value in node.values() for target in targets(value)]
    if isinstance(node, list):
        return [target for value in node for target in targets(value)]
    return []


def build_net(model: dict[str, Any], path: Path, trusted: Iterable[str] = ()) -> nn.Module:
    """The net a checkpoint's record describes, untrained; BadInput for a `_target_` outside the
    trusted modules (mnist_classifier.trust, `trusted` added) or for a class that is no torch module."""
    if (target := untrusted(targets(model), trusted)) is not None:
        raise BadInput(
            f"{path} is invalid: its net names _target_ {target}, outside the modules a checkpoint may "
            f"name ({', '.join(trusted_modules(trusted))}); {how_to_trust(target)}"
        )
    module, _, name = model["_target_"].rpartition(".")
    try:
        net_class = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise BadInput(
            f"{path} is invalid: its net names {model['_target_']}, which cannot be imported here "
            f"({one_line(error)}); put its module on the Python path (PYTHONPATH)"
        ) from error
    if not (isinstance(net_class, type) and issubclass(net_class, nn.Module)):
        raise BadInput(f"{path} is invalid: its net names {model['_target_']}, which is no torch module")
    return instantiate(model, _convert_="all")


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


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint as plain data: torch.load(weights_only=True), so no pickled code can run."""
    existing_file(path, "checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises a different type for each way a file is not one
        raise BadInput(
            f"{path} is invalid: not a checkpoint (torch.load failed: {first_line(error)})"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise BadInput(f"{path} is invalid: not a Lightning checkpoint (it holds no state_dict)")
    return checkpoint


def check_same_model(checkpoint: dict[str, Any], model: nn.Module, path: Path) -> None:
    """Refuse a checkpoint whose weights do not have the names and shapes of `model`'s, naming the
    first difference."""
    ours = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    theirs = {name: list(tensor.shape) for name, tensor in checkpoint["state_dict"].items()}
    if difference := different_weights(ours, theirs):
        raise BadInput(
            f"ckpt_path={path} is invalid: it holds a different model than this config's: {difference}"
        )
