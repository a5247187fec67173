"""Scoring models on labelled images, alone and as an ensemble; the inference commands' imports."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchmetrics.functional.classification import multiclass_accuracy

from mnist_classifier.errors import BadInput
from mnist_classifier.inference import InferenceModel, ensemble_probabilities, score
from mnist_classifier.models import LeNet

from .conftest import ROOT, TrainedRun, data_set, user_environment
from .drawings import page, ring


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


def test_accuracies_are_torchmetrics_multiclass_accuracies() -> None:
    generator = torch.Generator().manual_seed(0)
    probabilities = torch.rand(500, 10, generator=generator).softmax(dim=1)
    labels = torch.randint(0, 9, (500,), generator=generator)  # no image of the last class
    result = score(probabilities, labels)
    assert result.accuracy == pytest.approx(
        multiclass_accuracy(probabilities, labels, 10, average="micro").item()
    )
    assert result.per_class == pytest.approx(
        multiclass_accuracy(probabilities, labels, 10, average=None).tolist()
    )
    assert result.per_class[9] == 0


# Each inference command run through its main, serve.py's up to serving (test_serve runs its server);
# then none of the packages that training alone needs may have been imported.
INFERENCE_COMMANDS = """
import runpy, sys
import uvicorn

checkpoint, image, data_dir, out = sys.argv[1:]
uvicorn.run = lambda app, **settings: None
for script, argv in (
    ("predict.py", [checkpoint, image]),
    ("eval.py", [checkpoint, "--data-dir", data_dir]),
    ("export.py", [checkpoint, "--out", out]),
    ("serve.py", [checkpoint, "--port", "0"]),
):
    assert runpy.run_path(script)["main"](argv) == 0, script
imported = {name.partition(".")[0] for name in sys.modules}
print(sorted(imported & {"lightning", "pytorch_lightning", "torchmetrics", "torchvision"}))
"""


@pytest.mark.slow  # a process, as the commands are: the pytest process has imported everything
def test_the_inference_commands_import_neither_lightning_nor_torchmetrics_nor_torchvision(
    trained_run: TrainedRun, tiny_mnist: Path, tmp_path: Path
) -> None:
    image = tmp_path / "digit.png"
    page(ring()).save(image)
    arguments = [str(trained_run.best), str(image), str(tiny_mnist), str(tmp_path / "export")]
    result = subprocess.run(
        [sys.executable, "-c", INFERENCE_COMMANDS, *arguments],
        cwd=ROOT, env=user_environment(tiny_mnist), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    imported = result.stdout.splitlines()[-1]
    assert imported == "[]", f"the inference commands imported {imported} (their seconds: docs/benchmarks.md)"
