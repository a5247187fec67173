"""Checkpoints: the inference record every checkpoint carries, loading one alone anywhere, and
refusing one that names a net outside the project's or holds pickled code."""

import shutil
from pathlib import Path

import pytest
import torch

from mnist_classifier.checkpoint_files import RECORD, package_version
from mnist_classifier.data import MNISTDataModule
from mnist_classifier.errors import BadInput
from mnist_classifier.inference import load_for_inference
from mnist_classifier.training import build, instantiate_classifier

from .conftest import TrainedRun, data_set, script_module
from .drawings import page, ring


def test_every_checkpoint_carries_what_inference_needs(trained_run: TrainedRun, tiny_mnist: Path) -> None:
    datamodule = MNISTDataModule(tiny_mnist, data_set("mnist"), val_size=40, download=False)
    datamodule.setup("fit")
    for path in (trained_run.best, trained_run.last):
        record = torch.load(path, weights_only=True)[RECORD]
        assert record["model"] == {"_target_": "mnist_classifier.models.LeNet", "image_size": 32,
                                   "hidden_sizes": [120, 84], "num_classes": 10}  # fmt: skip
        assert (record["image_size"], record["resize"]) == (32, "bilinear")
        assert record["dataset"] == {"name": "mnist", "folder": "MNIST", "classes": list("0123456789"),
                                     "variable": "MNIST_DATA_DIR", "torchvision_class": "MNIST"}  # fmt: skip
        assert (record["mean"], record["std"]) == pytest.approx((datamodule.mean, datamodule.std))
        assert record["version"] == package_version()


def test_a_checkpoint_copied_alone_to_an_empty_folder_works_with_eval_predict_and_export(
    trained_run: TrainedRun, tiny_mnist: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    alone = tmp_path / "elsewhere" / "model.ckpt"
    alone.parent.mkdir()
    shutil.copy(trained_run.best, alone)
    monkeypatch.setenv("MNIST_DATA_DIR", str(tiny_mnist))
    monkeypatch.chdir(alone.parent)
    image = tmp_path / "digit.png"
    page(ring()).save(image)
    for script, argv in (
        ("eval.py", [str(alone)]),
        ("predict.py", [str(alone), str(image)]),
        ("export.py", [str(alone), "--out", str(tmp_path / "export"), "--formats", "torchscript"]),
    ):
        assert script_module(script).main(argv) == 0
    output = capsys.readouterr().out
    assert f"{alone}: test accuracy" in output and f"{image}\t" in output
    assert (tmp_path / "export" / "model.pt").is_file()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("os.system", "its net names _target_ os.system, outside the modules a checkpoint may name "
                      r"\(mnist_classifier.models, torch.nn\)"),
        ("torch.hub.load", "its net names _target_ torch.hub.load, outside the modules"),
        ("torch.nn.functional.relu", "its net names torch.nn.functional.relu, which is no torch module"),
        ("mnist_classifier.models.Resnet", "its net names mnist_classifier.models.Resnet, which cannot be "
                                           "imported here"),
    ],
)  # fmt: skip
def test_a_checkpoint_naming_a_class_outside_the_projects_nets_is_refused_before_it_is_called(
    trained_run: TrainedRun, tmp_path: Path, target: str, message: str
) -> None:
    checkpoint = torch.load(trained_run.best, weights_only=True)
    checkpoint[RECORD]["model"]["_target_"] = target
    torch.save(checkpoint, tmp_path / "hostile.ckpt")
    with pytest.raises(BadInput, match=f"^{tmp_path / 'hostile.ckpt'} is invalid: {message}"):
        load_for_inference(tmp_path / "hostile.ckpt")


class WritesAFile:
    """A pickled object that runs code when unpickled: it writes the file it names."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (self.path, "pickled code ran"))


def test_a_checkpoint_holding_pickled_code_is_refused_unrun_by_every_loader(
    trained_run: TrainedRun, tmp_path: Path, compose_config
) -> None:
    marker = tmp_path / "ran.txt"
    checkpoint = torch.load(trained_run.best, weights_only=True)
    checkpoint["surprise"] = WritesAFile(marker)
    hostile = tmp_path / "hostile.ckpt"
    torch.save(checkpoint, hostile)
    message = rf"^{hostile} is invalid: not a checkpoint \(torch.load failed: Weights only load failed"
    with pytest.raises(BadInput, match=message):
        load_for_inference(hostile)  # eval.py, predict.py, export.py, serve.py
    with pytest.raises(BadInput, match=message):
        build(compose_config(f"ckpt_path={hostile}"), resume_from=hostile)  # train.py resuming
    assert not marker.exists()


def test_a_checkpoint_of_another_nets_shapes_is_refused_in_one_line_on_resume_and_in_inference(
    trained_run: TrainedRun, tmp_path: Path, compose_config
) -> None:
    # Resumed: an MLP of widths 200 and 50 by a config of widths 64 and 32.
    wide = tmp_path / "wide.ckpt"
    torch.save({"state_dict": instantiate_classifier(compose_config("model=mlp")).state_dict()}, wide)
    narrow = compose_config(
        "model=mlp", "model.hidden_sizes=[64,32]", "data.val_size=40", f"ckpt_path={wide}"
    )
    with pytest.raises(BadInput) as resumed:
        build(narrow, resume_from=wide)
    assert str(resumed.value) == (
        f"ckpt_path={wide} is invalid: it holds a different model than this config's: "
        "net.layers.1.weight is [200, 1024] there and [64, 1024] in this model"
    )
    # Loaded for inference: LeNet's weights (widths 120 and 84) under a record that says 60 and 42.
    checkpoint = torch.load(trained_run.best, weights_only=True)
    checkpoint[RECORD]["model"]["hidden_sizes"] = [60, 42]
    torch.save(checkpoint, tmp_path / "relabelled.ckpt")
    with pytest.raises(BadInput) as loaded:
        load_for_inference(tmp_path / "relabelled.ckpt")
    message = str(loaded.value)
    assert message.startswith(f"{tmp_path / 'relabelled.ckpt'} is invalid: its weights do not fit its net: ")
    assert "\n" not in message and "fc1.weight" in message and "[120, 400]" in message
