"""The dashboards: the callbacks in a tiny fit logged to TensorBoard and read back from its event
files, the pictures, the HParams entry, and a real TensorBoard server over a train.py run, asked
through its HTTP data API."""

import io
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision.utils import make_grid

from mnist_classifier.augment import RandomAffine
from mnist_classifier.dashboards import callbacks
from mnist_classifier.dashboards.callbacks import Dashboards
from mnist_classifier.dashboards.drawing import CELL, confusion_image
from mnist_classifier.data import MNISTDataModule
from mnist_classifier.models import LeNet
from mnist_classifier.module import Classifier
from mnist_classifier.training import quiet_libraries

from .conftest import TrainedRun, data_set


@pytest.fixture(autouse=True)
def as_in_a_run() -> None:
    """The library notes that train.py silences (training.quiet_libraries) silenced here too: these
    tests drive Lightning themselves."""
    quiet_libraries()


def fit_and_test(data_dir: Path, log_dir: Path, callbacks: list[L.Callback], epochs: int = 2) -> L.Trainer:
    torch.manual_seed(0)
    datamodule = MNISTDataModule(data_dir, data_set("mnist"), val_size=40, batch_size=16, download=False)
    classifier = Classifier(LeNet(), nn.CrossEntropyLoss(), partial(torch.optim.Adam, lr=1e-3))
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        logger=L.pytorch.loggers.TensorBoardLogger(log_dir, name="", version="", default_hp_metric=False),
        callbacks=callbacks,
        log_every_n_steps=5,  # an epoch's steps
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(classifier, datamodule=datamodule)
    trainer.test(classifier, datamodule=datamodule)
    return trainer


def events(log_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(log_dir), size_guidance={"images": 0, "histograms": 0})
    accumulator.Reload()
    return accumulator


def logged_image(log_dir: Path, tag: str) -> torch.Tensor:
    """The one image logged under `tag`, decoded from its PNG: uint8 [H, W, 3]."""
    (image,) = events(log_dir).Images(tag)
    return torch.from_numpy(np.array(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB")))


def test_the_model_graph_is_logged_on_request(tmp_path: Path) -> None:
    classifier = Classifier(LeNet(), nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.01))
    logger = L.pytorch.loggers.TensorBoardLogger(tmp_path, name="", version="", log_graph=True)
    logger.log_graph(classifier)
    logger.finalize("success")
    assert "aten::_convolution" in {node.op for node in events(tmp_path).Graph().node}


def test_confusion_matrices_count_each_validation_and_test_image_once(
    tiny_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plotted: list[tuple[torch.Tensor, str]] = []

    def recording_image(counts: torch.Tensor, title: str) -> torch.Tensor:
        plotted.append((counts, title))
        return confusion_image(counts, title)

    monkeypatch.setattr(callbacks, "confusion_image", recording_image)
    fit_and_test(tiny_mnist, tmp_path, [Dashboards()])

    # Two validation epochs (the sanity check is left out, so 40 images each), then the 40 test images.
    assert [title for _, title in plotted] == [
        "validation set, epoch 0",
        "validation set, epoch 1",
        "test set",
    ]
    assert [int(counts.sum()) for counts, _ in plotted] == [40, 40, 40]
    assert all(counts.shape == (10, 10) for counts, _ in plotted)
    accumulator = events(tmp_path)
    assert len(accumulator.Images("val/confusion_matrix")) == 2
    assert len(accumulator.Images("test/confusion_matrix")) == 1


def test_confusion_image_colours_each_cell_by_its_row_share_and_labels_the_nonzero_ones() -> None:
    counts = torch.tensor([[3, 1], [0, 4]])
    image = confusion_image(counts, "a title")
    assert image.dtype == torch.uint8 and image.shape[0] == 3
    # The cells: 36 pixels a side, from (left, top) = (46, 28).
    cells = image[:, 28 : 28 + 2 * CELL, 46 : 46 + 2 * CELL].unfold(1, CELL, CELL).unfold(2, CELL, CELL)
    # Row shares 3/4 and 1/4 in the first row, 0 and 1 in the second, in the Blues colour map.
    for (true, predicted), share in {(0, 0): 0.75, (0, 1): 0.25, (1, 0): 0.0, (1, 1): 1.0}.items():
        cell = cells[:, true, predicted]
        expected = torch.tensor(colormaps["Blues"](share)[:3]) * 255
        torch.testing.assert_close(cell[:, 1, 1].float(), expected.float(), atol=1, rtol=0)
        # A count is written in the cell's middle unless it is zero.
        has_text = (cell != cell[:, 1:2, 1:2]).any().item()
        assert has_text == bool(counts[true, predicted])


class SaysTheFirstPixel(nn.Module):
    """A net that predicts the class written in an image's first pixel, except that it takes every 7
    for a 1."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # for the optimizer the classifier expects

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        said = images[:, 0, 0, 0].long()
        return F.one_hot(torch.where(said == 7, 1, said), 10).float()


def test_the_confusion_matrix_has_a_row_per_true_class_and_a_column_per_prediction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted: list[torch.Tensor] = []

    def recording_image(counts: torch.Tensor, title: str) -> torch.Tensor:
        counted.append(counts)
        return confusion_image(counts, title)

    monkeypatch.setattr(callbacks, "confusion_image", recording_image)
    labels = torch.arange(10).repeat(3)
    images = torch.zeros(30, 1, 32, 32)
    images[:, 0, 0, 0] = labels
    classifier = Classifier(SaysTheFirstPixel(), nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.01))
    logger = L.pytorch.loggers.TensorBoardLogger(tmp_path, name="", version="")
    trainer = L.Trainer(accelerator="cpu", logger=logger, callbacks=[Dashboards()], enable_progress_bar=False)
    trainer.test(classifier, DataLoader(TensorDataset(images, labels), batch_size=8), verbose=False)
    expected = torch.diag(torch.tensor([3] * 10))
    expected[7, 7], expected[7, 1] = 0, 3  # the row of the true 7s, all in the column of 1
    (counts,) = counted
    assert torch.equal(counts.cpu(), expected)
    drawn = logged_image(tmp_path, "test/confusion_matrix")
    # Each cell's colour: its count's share of its row (callbacks.confusion_image draws the cells
    # from (46, 28), 36 pixels a side).
    for true in range(10):
        for predicted in range(10):
            y, x = 28 + true * CELL + 1, 46 + predicted * CELL + 1
            share = float(expected[true, predicted]) / 3
            colour = torch.tensor(colormaps["Blues"](share)[:3]) * 255
            torch.testing.assert_close(drawn[y, x].float(), colour.float(), atol=1, rtol=0)


def test_misclassified_digits_are_the_wrong_predictions_with_their_probability(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    # A net that says 0 to everything, with probability 0.25: every test digit but the 0s is wrong.
    net = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 10))
    nn.init.zeros_(net[1].weight)
    net[1].bias.data = torch.log(torch.tensor([3.0] + [1.0] * 9))
    classifier = Classifier(net, nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.01))
    datamodule = MNISTDataModule(tiny_mnist, data_set("mnist"), val_size=40, download=False)
    misclassified = Dashboards(misclassified_digits=5)
    logger = L.pytorch.loggers.TensorBoardLogger(tmp_path, name="", version="")
    trainer = L.Trainer(
        accelerator="cpu", logger=logger, callbacks=[misclassified], enable_progress_bar=False
    )
    trainer.test(classifier, datamodule=datamodule, verbose=False)
    labels = datamodule.test_set[1]
    expected = [index for index in range(len(labels)) if labels[index] != 0][:5]
    assert [(label, prediction) for _, label, prediction, _ in misclassified.found] == [
        (int(labels[index]), 0) for index in expected
    ]
    for (image, *_, probability), index in zip(misclassified.found, expected, strict=True):
        assert torch.equal(image, datamodule.test_set[0][index, 0]) and probability == pytest.approx(0.25)
    assert len(events(tmp_path).Images("test/misclassified")) == 1


def test_training_inputs_are_logged_once_as_the_model_trains_on_them_distorted(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    augment = RandomAffine(rotation=10, scale=0.1, translate=0.1, shear=10, seed=0)
    datamodule = MNISTDataModule(
        tiny_mnist, data_set("mnist"), val_size=40, batch_size=16, download=False, augment=augment
    )
    classifier = Classifier(LeNet(), nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.01))
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        limit_val_batches=0,
        log_every_n_steps=5,  # an epoch's steps
        logger=L.pytorch.loggers.TensorBoardLogger(tmp_path, name="", version=""),
        callbacks=[Dashboards(training_inputs=16)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(classifier, datamodule=datamodule)
    (image,) = events(tmp_path).Images("train/inputs")  # once: not again in the second epoch
    assert image.step == 0
    cut = datamodule.train_dataloader()  # the first batch as cut, before it is distorted
    cut.set_epoch(0)
    plain, _ = next(iter(cut))

    def as_logged(images: torch.Tensor) -> torch.Tensor:
        """A grid as TensorBoard stores it: 8 a row, scaled to [0, 1], then to bytes, [H, W, 3]."""
        grid = make_grid(images[:16], nrow=8, normalize=True, pad_value=1.0)
        return (grid.permute(1, 2, 0) * 255).clamp(0, 255).to(torch.uint8)

    drawn = logged_image(tmp_path, "train/inputs").int()
    assert (drawn - as_logged(augment(plain, step=0)).int()).abs().max() <= 1
    assert (drawn - as_logged(plain).int()).abs().float().mean() > 10  # not the undistorted batch


def test_per_class_accuracy_is_each_classs_own(tiny_mnist: Path, tmp_path: Path) -> None:
    trainer = fit_and_test(tiny_mnist, tmp_path, [], epochs=1)  # one epoch: classes still mixed up
    accumulator = events(tmp_path)
    logged = [accumulator.Scalars(f"test/acc_class_{digit}")[-1].value for digit in range(10)]
    datamodule = trainer.datamodule
    images, labels = datamodule.test_set
    with torch.no_grad():
        predictions = trainer.lightning_module(images).argmax(dim=1)
    expected = [(predictions[labels == digit] == digit).float().mean().item() for digit in range(10)]
    assert logged == pytest.approx(expected, abs=1e-6)
    assert len(set(expected)) > 1  # classes told apart: a permutation of them would fail


def test_histograms_are_off_by_default_and_one_setting_turns_them_on(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    fit_and_test(tiny_mnist, tmp_path / "off", [Dashboards()])
    assert events(tmp_path / "off").Tags()["histograms"] == []
    assert set(events(tmp_path / "off").Tags()["images"]) == {
        "train/inputs",
        "val/confusion_matrix",
        "test/confusion_matrix",
        "test/misclassified",
    }

    fit_and_test(tiny_mnist, tmp_path / "on", [Dashboards(histograms_every_n_steps=2)], epochs=1)
    tags = set(events(tmp_path / "on").Tags()["histograms"])
    assert {"weights/net.conv1.weight", "gradients/net.conv1.weight", "gradients/net.fc3.bias"} <= tags
    # 5 steps (80 training images, batches of 16): steps 0, 2 and 4.
    assert [event.step for event in events(tmp_path / "on").Histograms("weights/net.fc1.weight")] == [0, 2, 4]


def test_each_picture_is_turned_off_by_its_own_setting(tiny_mnist: Path, tmp_path: Path) -> None:
    off = Dashboards(confusion_matrices=False, misclassified_digits=0, training_inputs=0)
    fit_and_test(tiny_mnist, tmp_path, [off], epochs=1)
    assert events(tmp_path).Tags()["images"] == []


@pytest.mark.slow
def test_a_real_tensorboard_server_shows_the_run_its_curves_images_and_hparams(
    trained_run: TrainedRun,
) -> None:
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(trained_run.run_dir.parent)]
    server = subprocess.Popen([*command, "--host", "127.0.0.1", "--port", "0"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    # TensorBoard picks a free port and says which: "TensorBoard 2.x at http://127.0.0.1:PORT/". Its
    # stderr is read to its end, in a thread: a full pipe would block the server's writes.
    log: list[str] = []
    said_port = threading.Event()
    port = None

    def read_log() -> None:
        nonlocal port
        for line in server.stderr:
            log.append(line)
            if port is None and (found := re.search(r"http://127.0.0.1:(\d+)/", line)):
                port = int(found.group(1))
                said_port.set()
        said_port.set()  # it ended without saying its port

    threading.Thread(target=read_log, daemon=True).start()
    if not (said_port.wait(120) and port):
        server.kill()
        raise AssertionError("tensorboard did not start:\n" + "".join(log))
    base = f"http://127.0.0.1:{port}"

    def get(path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    try:
        deadline = time.monotonic() + 120
        while get("/data/runs") != ["run"]:  # the server is up and has read the run
            assert server.poll() is None and time.monotonic() < deadline, "tensorboard did not read the run"
            time.sleep(0.2)

        scalars = get("/data/plugin/scalars/tags")["run"]
        assert {
            "train/loss_step",
            "train/acc",
            "val/acc",
            "val/acc_best",
            "test/acc",
            "test/acc_class_7",
        } <= set(scalars)
        images = get("/data/plugin/images/tags")["run"]
        expected_images = {
            "train/inputs",
            "val/confusion_matrix",
            "test/confusion_matrix",
            "test/misclassified",
        }
        assert expected_images <= set(images)

        experiment = get("/data/plugin/hparams/experiment", {"experimentName": ""})
        hparam_names = {info["name"] for info in experiment["hparamInfos"]}
        assert {"model", "optimizer", "optimizer.lr", "data.batch_size", "seed"} <= hparam_names
        metric_tags = {info["name"]["tag"] for info in experiment["metricInfos"]}
        assert {"hparams/val/acc_best", "hparams/test/acc"} <= metric_tags
        statuses = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
        query = {
            "experimentName": "",
            "allowedStatuses": statuses,
            "colParams": [],
            "startIndex": 0,
            "sliceSize": 10,
        }
        groups = get("/data/plugin/hparams/session_groups", query)
        (group,) = groups["sessionGroups"]
        assert group["hparams"]["model"] == "lenet" and group["hparams"]["optimizer.lr"] == pytest.approx(
            trained_run.config.optimizer.lr
        )
        metrics = {value["name"]["tag"]: value["value"] for value in group["metricValues"]}
        for tag, line in (
            ("hparams/test/acc", "test accuracy"),
            ("hparams/val/acc_best", "best val accuracy"),
        ):
            printed = float(re.search(rf"{line}: +([0-9.]+)", trained_run.output).group(1))
            assert metrics[tag] == pytest.approx(printed, abs=5e-5)  # what the run's summary said
    finally:
        server.terminate()
        server.wait(timeout=30)
