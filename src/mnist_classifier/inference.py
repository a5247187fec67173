"""A trained checkpoint put to use: the net with its preprocessing, its probabilities for MNIST-sized
images, and scores on labelled images, alone or as an ensemble (the mean of several checkpoints'
probabilities). eval.py, predict.py, export.py and serve.py load checkpoints through here.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchmetrics.functional.classification import multiclass_accuracy

from mnist_classifier.checkpoints import RECORD, build_net, load_checkpoint
from mnist_classifier.data import to_inputs
from mnist_classifier.errors import BadInput, one_line


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
    file is no checkpoint of this project's train.py."""
    checkpoint = load_checkpoint(path)
    record = checkpoint.get(RECORD)
    if record is None:
        raise BadInput(
            f"{path} is invalid: it has no inference record, so it was not written by train.py of "
            "this project"
        )
    net = build_net(record["model"], path)
    weights = {key.removeprefix("net."): value for key, value in checkpoint["state_dict"].items()}
    try:
        net.load_state_dict({key: value for key, value in weights.items() if key in net.state_dict()})
    except RuntimeError as error:
        raise BadInput(f"{path} is invalid: its weights do not fit its net: {one_line(error)}") from error
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


@dataclass
class Scores:
    loss: float  # the mean negative log-likelihood of the true labels
    accuracy: float
    per_class: list[float]


def score(probabilities: torch.Tensor, labels: torch.Tensor) -> Scores:
    classes = probabilities.shape[1]
    loss = torch.nn.functional.nll_loss(probabilities.clamp_min(1e-12).log(), labels)
    per_class = multiclass_accuracy(probabilities, labels, classes, average=None)
    accuracy = multiclass_accuracy(probabilities, labels, classes, average="micro")
    return Scores(float(loss), float(accuracy), [float(value) for value in per_class])


def check_ensemble(models: Sequence[InferenceModel]) -> None:
    """Refuse models that cannot be averaged: other data sets or image sizes than the first's."""
    first = models[0]
    for model in models[1:]:
        for setting in ("dataset", "image_size"):
            if getattr(model, setting) != getattr(first, setting):
                raise BadInput(
                    f"{model.path} is invalid in this ensemble: its {setting} is {getattr(model, setting)}, "
                    f"{first.path}'s is {getattr(first, setting)}; an ensemble averages models of one "
                    "data set and image size"
                )


def ensemble_probabilities(models: Sequence[InferenceModel], images: torch.Tensor) -> list[torch.Tensor]:
    """Each model's probabilities for uint8 images [N, 28, 28] (each with its own preprocessing),
    then, for several models, their mean: the ensemble's."""
    check_ensemble(models)
    each = [model.probabilities(images) for model in models]
    return [*each, torch.stack(each).mean(dim=0)] if len(each) > 1 else each
