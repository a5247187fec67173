"""Reading a checkpoint safely: its plain data (no pickled code runs), the net its inference record
names (built only from the trusted modules), and its weights' names and shapes against a net's.

Inference (eval.py, predict.py, export.py, serve.py) reads checkpoints through here, so it imports
no Lightning; resuming a run does too. torch is imported where a checkpoint is read or a net built,
not with the module: config.py, which imports no torch so that a refused command answers fast,
imports it for different_weights.
"""

import importlib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.utils import instantiate

from mnist_classifier.errors import BadInput, existing_file, first_line, one_line
from mnist_classifier.trust import how_to_trust, trusted_modules, untrusted

if TYPE_CHECKING:
    from torch import nn

RECORD = "mnist_classifier"  # the checkpoint's key for the inference record


def package_version() -> str:
    return metadata.version("mnist-classifier")


def targets(node: Any) -> list[str]:
    """Every `_target_` in a nested config."""
    if isinstance(node, dict):
        own = [str(node["_target_"])] if "_target_" in node else []
        return own + [target for value in node.values() for target in targets(value)]
    if isinstance(node, list):
        return [target for value in node for target in targets(value)]
    return []


def build_net(model: dict[str, Any], path: Path, trusted: Iterable[str] = ()) -> "nn.Module":
    """The net a checkpoint's record describes, untrained; BadInput for a `_target_` outside the
    trusted modules (mnist_classifier.trust, `trusted` added) or for a class that is no torch module."""
    from torch import nn

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


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint as plain data: torch.load(weights_only=True), so no pickled code can run."""
    import torch

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


def different_weights(ours: dict[str, list[int]], theirs: dict[str, list[int]]) -> str | None:
    """The first difference between two sets of weights' names and shapes, or None."""
    if ours == theirs:
        return None
    if missing := sorted(ours.keys() - theirs.keys()):
        return f"it has no {missing[0]}"
    if extra := sorted(theirs.keys() - ours.keys()):
        return f"it has {extra[0]}, which this model has not"
    name = next(name for name in ours if ours[name] != theirs[name])
    return f"{name} is {theirs[name]} there and {ours[name]} in this model"


def check_same_model(checkpoint: dict[str, Any], model: "nn.Module", path: Path) -> None:
    """Refuse a checkpoint whose weights do not have the names and shapes of `model`'s, naming the
    first difference."""
    ours = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    theirs = {name: list(tensor.shape) for name, tensor in checkpoint["state_dict"].items()}
    if difference := different_weights(ours, theirs):
        raise BadInput(
            f"ckpt_path={path} is invalid: it holds a different model than this config's: {difference}"
        )
