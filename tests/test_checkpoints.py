"""Checkpoints: the inference record every checkpoint carries, loading one alone anywhere, the
upgrade of older ones, and which checkpoint a run resumes from."""

import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from mnist_classifier.checkpoints import RECORD, package_version, resume_point, upgrade
from mnist_classifier.data import MNISTDataModule
from mnist_classifier.errors import BadInput
from mnist_classifier.inference import load_for_inference
from mnist_classifier.training import build

from .conftest import TrainedRun, script_module
from .drawings import page, ring


def test_every_checkpoint_carries_what_inference_needs(trained_run: TrainedRun, tiny_mnist: Path) -> None:
    datamodule = MNISTDataModule(tiny_mnist, val_size=40, download=False)
    datamodule.setup("fit")
    for path in (trained_run.best, trained_run.last):
        record = torch.load(path, weights_only=True)[RECORD]
        assert record["model"] == {"_target_": "mnist_classifier.models.LeNet", "image_size": 32,
                                   "hidden_sizes": [120, 84]}  # fmt: skip
        assert (record["dataset"], record["image_size"], record["resize"]) == ("mnist", 32, "bilinear")
        assert record["classes"] == [str(digit) for digit in range(10)]
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


def test_an_older_checkpoint_is_upgraded_from_its_run_config_to_the_same_model(
    trained_run: TrainedRun, tmp_path: Path
) -> None:
    run_dir = shutil.copytree(trained_run.run_dir, tmp_path / "run")
    old = run_dir / "checkpoints" / trained_run.best.name
    checkpoint = torch.load(old, weights_only=True)
    record = checkpoint.pop(RECORD)
    checkpoint["MNISTDataModule"] = {"mean": record["mean"], "std": record["std"]}  # where it was kept
    torch.save(checkpoint, old)
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    del config["data"]["dataset"]  # older configs knew only MNIST
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(
        BadInput, match=r"convert it once with python -m mnist_classifier\.checkpoints upgrade"
    ):
        load_for_inference(old)

    upgrade(old)
    upgraded, original = load_for_inference(old), load_for_inference(trained_run.best)
    assert torch.load(old, weights_only=True)[RECORD] == record
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    torch.testing.assert_close(upgraded.probabilities(images), original.probabilities(images))


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("os.system", "its net names _target_ os.system, outside the modules a checkpoint may name "
                      r"\(mnist_classifier.models, torch.nn\)"),
        ("torch.hub.load", "its net names _target_ torch.hub.load, outside the modules"),
        ("torch.nn.functional.relu", "its net names torch.nn.functional.relu, which is no torch module"),
        ("mnist_classifier.models.Resnet", "its net names mnist_classifier.models.Resnet, which is not"),
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


def test_a_record_of_version_0_1_names_its_net_by_class_and_still_loads(
    trained_run: TrainedRun, tmp_path: Path
) -> None:
    checkpoint = torch.load(trained_run.best, weights_only=True)
    model = checkpoint[RECORD]["model"]
    checkpoint[RECORD]["model"] = {"name": "LeNet"} | {k: v for k, v in model.items() if k != "_target_"}
    torch.save(checkpoint, tmp_path / "v0.1.ckpt")
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    torch.testing.assert_close(
        load_for_inference(tmp_path / "v0.1.ckpt").probabilities(images),
        load_for_inference(trained_run.best).probabilities(images),
    )


def make_run(log_dir: Path, name: str, overrides: list[str], age: float) -> Path:
    """A run dir with Hydra's record of its overrides and a last checkpoint `age` seconds old."""
    run_dir = log_dir / "2026-11-25" / name
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    last = run_dir / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"")
    stamp = last.stat().st_mtime - age
    os.utime(last, (stamp, stamp))
    return run_dir


def test_last_resumes_the_newest_run_with_the_same_overrides_in_its_own_dir(tmp_path: Path) -> None:
    make_run(tmp_path, "10-00-00", ["optimizer=adam"], age=30)
    newest = make_run(tmp_path, "11-00-00", ["optimizer=adam", "ckpt_path=last"], age=20)
    make_run(tmp_path, "12-00-00", ["optimizer=sgd"], age=10)
    assert resume_point("last", tmp_path / "new", tmp_path, ["optimizer=adam", "ckpt_path=last"]) == (
        newest / "checkpoints" / "last.ckpt",
        newest,
    )
    assert resume_point(None, tmp_path / "new", tmp_path, []) == (None, None)


def test_a_checkpoint_file_continues_its_run_dir_and_one_elsewhere_starts_a_new_one(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "10-00-00", [], age=0)
    inside = run_dir / "checkpoints" / "last.ckpt"
    assert resume_point(str(inside), tmp_path / "new", tmp_path, []) == (inside, run_dir)
    elsewhere = tmp_path / "copy.ckpt"
    elsewhere.write_bytes(b"")
    assert resume_point(str(elsewhere), tmp_path / "new", tmp_path, []) == (elsewhere, None)


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
