"""What a checkpoint carries, and reading one: safely, for resuming, and for inference.

Every checkpoint a run writes holds, beside Lightning's state, a record of what inference needs
(the net and its settings, the data set and its classes, the image size, resize and
normalisation, the project version), so that a checkpoint copied alone to another machine is
enough for eval.py, predict.py, export.py and serve.py: `load_for_inference(path)`.

    python -m mnist_classifier.checkpoints upgrade CKPT   # adds the record to an older checkpoint
"""

import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mnist_classifier.data import to_inputs
from mnist_classifier.datasets import DATASETS
from mnist_classifier.errors import BadInput, entry_point, existing_file, one_line
from mnist_classifier.models import MODELS

RECORD = "mnist_classifier"  # the checkpoint's key for the inference record
MODELS_MODULE = "mnist_classifier.models."


def package_version() -> str:
    return metadata.version("mnist-classifier")


def model_record(model: DictConfig) -> dict[str, Any]:
    """A model config as the record keeps it: the net's class name and its arguments."""
    arguments = OmegaConf.to_container(model, resolve=True)
    assert isinstance(arguments, dict)
    target = str(arguments.pop("_target_"))
    return {"name": target.removeprefix(MODELS_MODULE), **arguments}


def inference_record(model: DictConfig, data: DictConfig, mean: float | None, std: float | None) -> dict:
    """What inference needs from a run's model and data configs and its normalisation."""
    return {
        "version": package_version(),
        "model": model_record(model),
        "dataset": data.dataset,
        "classes": list(DATASETS[data.dataset].classes),
        "image_size": data.image_size,
        "resize": data.resize,
        "mean": mean,
        "std": std,
    }


class InferenceRecord(Callback):
    """Writes the inference record into every checkpoint the run saves."""

    def __init__(self, model: DictConfig, data: DictConfig) -> None:
        self.model, self.data = model, data

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        datamodule = trainer.datamodule
        checkpoint[RECORD] = inference_record(self.model, self.data, datamodule.mean, datamodule.std)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint as plain data: torch.load(weights_only=True), so no pickled code can run."""
    existing_file(path, "checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises a different type for each way a file is not one
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise BadInput(f"{path} is invalid: not a checkpoint (torch.load failed: {reason})") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise BadInput(f"{path} is invalid: not a Lightning checkpoint (it holds no state_dict)")
    return checkpoint


def check_same_model(checkpoint: dict[str, Any], model: nn.Module, path: Path) -> None:
    """Refuse a checkpoint whose weights do not have the names and shapes of `model`'s, naming the
    first difference."""
    ours = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    theirs = {name: list(tensor.shape) for name, tensor in checkpoint["state_dict"].items()}
    if ours == theirs:
        return
    if missing := sorted(ours.keys() - theirs.keys()):
        difference = f"it has no {missing[0]}"
    elif extra := sorted(theirs.keys() - ours.keys()):
        difference = f"it has {extra[0]}, which this model has not"
    else:
        name = next(name for name in ours if ours[name] != theirs[name])
        difference = f"{name} is {theirs[name]} there and {ours[name]} in this model"
    raise BadInput(
        f"ckpt_path={path} is invalid: it holds a different model than this config's: {difference}"
    )


@dataclass
class InferenceModel:
    """A trained net with what it needs to classify images: MNIST-sized uint8 images in,
    probabilities out."""

    net: nn.Module
    dataset: str
    classes: tuple[str, ...]
    image_size: int
    resize: str
    mean: float
    std: float
    path: Path

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images [N, 28, 28] -> the net's input, resized and normalised as in training."""
        return (to_inputs(images, self.image_size, self.resize) - self.mean) / self.std

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """uint8 images [N, 28, 28] -> class probabilities [N, classes]."""
        device = next(self.net.parameters()).device
        return torch.cat(
            [
                self.net(self.inputs(batch).to(device)).softmax(dim=1).cpu()
                for batch in images.split(batch_size)
            ]
        )


def load_for_inference(path: Path, device: str | torch.device = "cpu") -> InferenceModel:
    """The net a checkpoint holds, in eval mode, with its preprocessing; refused with one line if the
    file is no checkpoint of this project, or an older one without the inference record."""
    checkpoint = load_checkpoint(path)
    record = checkpoint.get(RECORD)
    if record is None:
        raise BadInput(
            f"{path} is invalid: it was written before checkpoints carried their settings; convert it "
            f"once with python -m mnist_classifier.checkpoints upgrade {path} (it reads the run's "
            ".hydra/config.yaml beside it)"
        )
    arguments = dict(record["model"])
    name = arguments.pop("name")
    if name not in MODELS:
        raise BadInput(f"{path} is invalid: it holds a {name}, and inference knows {', '.join(MODELS)}")
    net = MODELS[name](**arguments)
    weights = {key.removeprefix("net."): value for key, value in checkpoint["state_dict"].items()}
    try:
        net.load_state_dict({key: value for key, value in weights.items() if key in net.state_dict()})
    except RuntimeError as error:
        raise BadInput(f"{path} is invalid: its weights do not fit its {name}: {one_line(error)}") from error
    return InferenceModel(
        net=net.eval().to(device),
        dataset=record["dataset"],
        classes=tuple(record["classes"]),
        image_size=record["image_size"],
        resize=record["resize"],
        mean=record["mean"],
        std=record["std"],
        path=path,
    )


def upgrade(path: Path) -> None:
    """Add the inference record to a checkpoint written before checkpoints carried one, from the
    config of the run that wrote it (<run>/.hydra/config.yaml) and its data module's state."""
    checkpoint = load_checkpoint(path)
    if RECORD in checkpoint:
        return
    config_file = path.parent.parent / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise BadInput(
            f"{path} is invalid for upgrade: {config_file} is missing, which holds its run's config"
        )
    run = OmegaConf.load(config_file)
    if "dataset" not in run.data:  # older configs knew only MNIST
        run.data.dataset = "mnist"
    normalisation = checkpoint.get("MNISTDataModule") or {}
    checkpoint[RECORD] = inference_record(
        run.model, run.data, normalisation.get("mean"), normalisation.get("std")
    )
    torch.save(checkpoint, path)


@entry_point
def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "upgrade":
        usage = "python -m mnist_classifier.checkpoints upgrade CKPT [CKPT ...]"
        raise BadInput(f"{' '.join(argv) or 'no arguments'} is invalid: {usage}")
    for name in argv[1:]:
        upgrade(Path(name))
        print(f"upgraded: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
