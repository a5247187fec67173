"""Scoring trained models on labelled images, alone or as an ensemble (the mean of their
probabilities)."""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchmetrics.functional.classification import multiclass_accuracy

from mnist_classifier.checkpoints import InferenceModel
from mnist_classifier.errors import BadInput


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
