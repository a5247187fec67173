"""A trained checkpoint put to use: the net with its preprocessing, its probabilities for MNIST-sized
images, and scores on labelled images, alone or as an ensemble (the mean of several checkpoints'
probabilities). eval.py, predict.py, export.py and serve.py load checkpoints through here.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mnist_classifier.checkpoint_files import RECORD, build_net, load_checkpoint
from mnist_classifier.datasets import DataSet
from mnist_classifier.errors import BadInput, one_line
from mnist_classifier.preprocessing import to_inputs


@dataclass
class InferenceModel:
    """A trained net with what it needs to classify images: MNIST-sized uint8 images in,
    probabilities out."""

    net: nn.Module
    dataset: DataSet
    image_size: int
    resize: str
    mean: float
    std: float
    path: Path

    @property
    def classes(self) -> tuple[str, ...]:
        return self.dataset.classes

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


def inference_device(name: str) -> torch.device:
    """The device `--device` names, refused with BadInput where torch does not know it or this machine
    lacks it: checked before a checkpoint is loaded, not when the net is moved there."""
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise BadInput(f"--device {name} is invalid: give cpu, cuda, cuda:N (the N-th GPU) or mps")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise BadInput(
                f"--device {name} is invalid: this machine has no CUDA GPU (torch.cuda.is_available() is "
                "False); use cpu"
            )
        if device.index is not None and device.index >= count:
            raise BadInput(
                f"--device {name} is invalid: this machine has {count} CUDA GPUs, cuda:0 to cuda:{count - 1}"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise BadInput(f"--device {name} is invalid: this machine has no Apple GPU; use cpu")
    return device


def load_for_inference(
    path: Path, device: str | torch.device = "cpu", trusted: Iterable[str] = ()
) -> InferenceModel:
    """The net a checkpoint holds, in eval mode, with its preprocessing; refused with one line if the
    file is no checkpoint of this project's train.py, or its net's module is not trusted
    (checkpoints.trusted_modules, which `trusted` adds to)."""
    checkpoint = load_checkpoint(path)
    record = checkpoint.get(RECORD)
    if record is None:
        raise BadInput(
            f"{path} is invalid: it has no inference record, so it was not written by train.py of "
            "this project"
        )
    net = build_net(record["model"], path, trusted)
    weights = {key.removeprefix("net."): value for key, value in checkpoint["state_dict"].items()}
    try:
        net.load_state_dict({key: value for key, value in weights.items() if key in net.state_dict()})
    except RuntimeError as error:
        raise BadInput(f"{path} is invalid: its weights do not fit its net: {one_line(error)}") from error
    return InferenceModel(
        net=net.eval().to(device),
        dataset=recorded_dataset(record, path),
        image_size=record["image_size"],
        resize=record["resize"],
        mean=record["mean"],
        std=record["std"],
        path=path,
    )


def recorded_dataset(record: dict, path: Path) -> DataSet:
    """The data set a record declares; records that named it only (`mnist`) by its YAML in conf/data/."""
    if isinstance(record["dataset"], dict):
        return DataSet(**record["dataset"])
    from hydra.errors import HydraException
    from hydra.utils import instantiate

    from mnist_classifier.config import compose

    name = record["dataset"]
    try:
        declared = compose([f"data={name}"], output_dir=path.parent).data.dataset
    except HydraException as error:
        raise BadInput(f"{path} is invalid: its data set {name} has no YAML in conf/data/") from error
    return instantiate(declared)


@dataclass
class Scores:
    loss: float  # the mean negative log-likelihood of the true labels
    accuracy: float
    per_class: list[float]


def score(probabilities: torch.Tensor, labels: torch.Tensor) -> Scores:
    """The scores of probabilities [N, classes] against labels [N]; a class without images has a
    per-class accuracy of 0, as torchmetrics gives it."""
    right = (probabilities.argmax(dim=1) == labels).double()
    classes = probabilities.shape[1]
    images = torch.bincount(labels, minlength=classes)
    per_class = torch.bincount(labels, weights=right, minlength=classes) / images.clamp_min(1)
    loss = torch.nn.functional.nll_loss(probabilities.clamp_min(1e-12).log(), labels)
    return Scores(float(loss), float(right.mean()), [float(value) for value in per_class])


def check_ensemble(models: Sequence[InferenceModel]) -> None:
    """Refuse models that cannot be averaged: other data sets or image sizes than the first's."""
    first = models[0]
    for model in models[1:]:
        for setting, mine, theirs in (
            ("data set", model.dataset.name, first.dataset.name),
            ("classes", model.classes, first.classes),
            ("image size", model.image_size, first.image_size),
        ):
            if mine != theirs:
                raise BadInput(
                    f"{model.path} is invalid in this ensemble: its {setting} is {mine}, {first.path}'s is "
                    f"{theirs}; an ensemble averages models of one data set and image size"
                )


def ensemble_probabilities(models: Sequence[InferenceModel], images: torch.Tensor) -> list[torch.Tensor]:
    """Each model's probabilities for uint8 images [N, 28, 28] (each with its own preprocessing),
    then, for several models, their mean: the ensemble's."""
    check_ensemble(models)
    each = [model.probabilities(images) for model in models]
    return [*each, torch.stack(each).mean(dim=0)] if len(each) > 1 else each
