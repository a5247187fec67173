"""callbacks=ema: the average of the weights is what is validated, saved, tested and loaded, and
before it starts the net's own weights are validated, not a stale copy of their first values."""

import csv
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from mnist_classifier.averaging import AVERAGED, RAW_WEIGHTS
from mnist_classifier.datasets import read_split
from mnist_classifier.inference import load_for_inference, score
from mnist_classifier.training import build, run

from .conftest import TINY_RUN, data_set


def test_the_validated_saved_tested_and_loaded_weights_are_the_average(
    compose_config, tmp_path: Path, tiny_mnist: Path
) -> None:
    cfg = compose_config(
        *TINY_RUN, "trainer.max_epochs=3", "callbacks=ema", "callbacks.ema.decay=0.6", "logger=csv"
    )
    results = run(cfg)
    run_dir = tmp_path / "run"
    (best,) = (run_dir / "checkpoints").glob("epoch*.ckpt")
    checkpoint = torch.load(best, weights_only=True)
    net = [name for name in checkpoint["state_dict"] if name.startswith("net.")]
    assert any(not torch.equal(checkpoint["state_dict"][name], checkpoint[RAW_WEIGHTS][name]) for name in net)
    assert checkpoint[AVERAGED] == checkpoint["global_step"]  # one update an optimizer step

    # Tested: the logged test loss and accuracy are the checkpoint's own, scored apart from the run.
    model = load_for_inference(best)
    images, labels = read_split(tiny_mnist, data_set("mnist"), train=False)
    scores = score(model.probabilities(images), labels)
    assert results["test/loss"] == pytest.approx(scores.loss, rel=1e-5)
    assert results["test/acc"] == pytest.approx(scores.accuracy)

    # Validated: the best epoch's logged validation loss is the checkpoint's own on the validation images.
    datamodule, _, _ = build(cfg)
    val_images, val_labels = datamodule.val_set
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model.net(val_images), val_labels).item()
    with open(run_dir / "csv" / "metrics.csv") as file:
        val_losses = [float(row["val/loss"]) for row in csv.DictReader(file) if row["val/loss"]]
    assert val_losses[checkpoint["epoch"]] == pytest.approx(loss, rel=1e-5)


class Weights(Callback):
    """The net's weights at the start of each validation epoch (after the sanity check)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, torch.Tensor]] = []

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.seen.append({name: value.clone() for name, value in pl_module.net.state_dict().items()})


def same(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(first[name], second[name]) for name in first)


def test_before_the_average_starts_the_nets_own_weights_are_validated(compose_config) -> None:
    cfg = compose_config(*TINY_RUN, "callbacks=ema", "callbacks.ema.start_epoch=1", "~logger")
    datamodule, classifier, trainer = build(cfg)
    initial = {name: value.clone() for name, value in classifier.net.state_dict().items()}
    trained, validated = Weights(), Weights()  # before and after the average's hooks
    ema = next(
        index
        for index, callback in enumerate(trainer.callbacks)
        if type(callback).__name__ == "WeightAverage"
    )
    trainer.callbacks.insert(ema + 1, validated)
    trainer.callbacks.insert(ema, trained)
    trainer.fit(classifier, datamodule=datamodule)
    (trained_0, trained_1), (validated_0, validated_1) = trained.seen, validated.seen
    assert same(validated_0, trained_0) and not same(validated_0, initial)  # epoch 0: no average yet
    assert not same(validated_1, trained_1)  # epoch 1: the average
