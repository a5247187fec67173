"""Scoring models on labelled images, alone and as an ensemble."""

from pathlib import Path

import pytest
import torch

from mnist_classifier.errors import BadInput
from mnist_classifier.inference import InferenceModel, ensemble_probabilities, score
from mnist_classifier.models import LeNet

from .conftest import data_set


def model(seed: int, **settings) -> InferenceModel:
    torch.manual_seed(seed)
    defaults = {"dataset": data_set("mnist"), "image_size": 32, "resize": "bilinear"}
    return InferenceModel(
        net=LeNet().eval(), mean=0.13, std=0.3, path=Path(f"m{seed}.ckpt"), **defaults | settings
    )


def test_the_ensemble_is_the_mean_of_its_members_probabilities() -> None:
    images = torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8)
    members = [model(0), model(1), model(2)]
    *each, ensemble = ensemble_probabilities(members, images)
    for member, probabilities in zip(members, each, strict=True):
        torch.testing.assert_close(probabilities, member.probabilities(images))
    torch.testing.assert_close(ensemble, torch.stack(each).mean(dim=0))
    assert len(ensemble_probabilities(members[:1], images)) == 1  # one model: no ensemble


def test_members_of_other_data_sets_or_image_sizes_are_refused() -> None:
    images = torch.zeros(2, 28, 28, dtype=torch.uint8)
    with pytest.raises(
        BadInput, match=r"m1.ckpt is invalid in this ensemble: its image size is 28, m0.ckpt's is 32"
    ):
        ensemble_probabilities([model(0), model(1, image_size=28)], images)
    with pytest.raises(BadInput, match=r"its data set is fashion_mnist, m0\.ckpt's is mnist"):
        ensemble_probabilities([model(0), model(1, dataset=data_set("fashion_mnist"))], images)


def test_scores_are_accuracy_mean_log_loss_and_per_class_accuracy() -> None:
    probabilities = torch.tensor([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    labels = torch.tensor([0, 2, 0, 2])
    result = score(probabilities, labels)
    assert result.accuracy == pytest.approx(0.75)
    assert result.loss == pytest.approx(-torch.tensor([0.7, 0.3, 0.6, 0.8]).log().mean().item())
    assert result.per_class == pytest.approx([1.0, 0.0, 0.5])
