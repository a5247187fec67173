"""eval.py, predict.py and export.py on a checkpoint that train.py wrote, as a user runs them."""

import json
import re
import shutil
from pathlib import Path

import onnxruntime
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.datasets import MNIST
from torchvision.io import write_jpeg, write_png

from mnist_classifier.data import MNISTDataModule
from mnist_classifier.experiment import trained_classifier

from .conftest import run_script


@pytest.fixture(scope="module")
def trained(tiny_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The best checkpoint of a 3-epoch LeNet run, and what train.py printed."""
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    overrides = ["data.val_size=40", "data.batch_size=16", "trainer.max_epochs=3", f"hydra.run.dir={run_dir}"]
    result = run_script("train.py", *overrides, data_dir=tiny_mnist)
    assert result.returncode == 0, result.stderr
    (checkpoint,) = (run_dir / "checkpoints").glob("epoch*.ckpt")
    return checkpoint, result.stdout + result.stderr


def test_eval_prints_the_test_results_that_training_reported(
    trained: tuple[Path, str], tiny_mnist: Path
) -> None:
    checkpoint, training_output = trained
    result = run_script("eval.py", f"ckpt_path={checkpoint}", data_dir=tiny_mnist)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    accuracy = re.compile(r"test accuracy: +([0-9.]+)")
    assert accuracy.search(output).group(1) == accuracy.search(training_output).group(1)
    assert re.search(r"test loss: +[0-9.]+", output)
    per_class = re.search(r"per class: +(.*)", output).group(1)
    assert [entry.split(":")[0] for entry in per_class.split()[::2]] == [str(digit) for digit in range(10)]


def test_eval_refuses_a_missing_setting_or_a_checkpoint_outside_a_run_dir(
    trained: tuple[Path, str], tiny_mnist: Path, tmp_path: Path
) -> None:
    checkpoint, _ = trained
    moved = tmp_path / "model.ckpt"
    moved.write_bytes(checkpoint.read_bytes())
    cases = [
        ([], "error: ckpt_path is not set: python eval.py ckpt_path="),
        ([f"ckpt_path={moved}"], f"error: ckpt_path={moved} is not in a run dir"),
        (
            [f"ckpt_path={tmp_path / 'none.ckpt'}"],
            f"error: ckpt_path={tmp_path / 'none.ckpt'} does not exist",
        ),
    ]
    for args, message in cases:
        result = run_script("eval.py", *args, f"hydra.run.dir={tmp_path / 'eval'}", data_dir=tiny_mnist)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), result.stderr


def test_predict_labels_image_files_as_the_model_labels_the_test_set(
    trained: tuple[Path, str], tiny_mnist: Path, tmp_path: Path
) -> None:
    checkpoint, _ = trained
    digits = MNIST(tiny_mnist, train=False).data[:6]
    files = []
    for index, digit in enumerate(digits):
        files.append(tmp_path / f"digit{index}.png")
        write_png(digit[None], str(files[-1]))
    big = tmp_path / "digit0_big.jpg"  # another format and size: converted to 28x28 first
    write_jpeg(TF.resize(digits[0][None], [112, 112]), str(big))

    result = run_script("predict.py", str(checkpoint), *map(str, files), str(big), data_dir=tiny_mnist)
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.strip().splitlines()]
    assert [row[0] for row in rows] == [*map(str, files), str(big)]

    # The same digits through the data module's test set and the checkpoint's classifier.
    classifier, _, _ = trained_classifier(checkpoint)
    datamodule = MNISTDataModule(tiny_mnist, val_size=40, download=False)
    datamodule.setup("test")
    with torch.inference_mode():
        probabilities = classifier.eval()(datamodule.test_set.tensors[0][:6]).softmax(dim=1)
    assert [int(row[1]) for row in rows[:6]] == probabilities.argmax(dim=1).tolist()
    assert [float(row[2]) for row in rows[:6]] == pytest.approx(
        probabilities.max(dim=1).values.tolist(), abs=1e-4
    )
    assert 0 <= int(rows[6][1]) <= 9 and 0 < float(rows[6][2]) <= 1


def test_predict_refuses_a_file_that_is_not_an_image_in_one_line(
    trained: tuple[Path, str], tiny_mnist: Path, tmp_path: Path
) -> None:
    checkpoint, _ = trained
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    result = run_script("predict.py", str(checkpoint), str(text), data_dir=tiny_mnist)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {text} is not an image: torchvision decodes PNG and JPEG files"


def outputs_of(classifier: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of 7 random images (another batch size than the export's example) and the
    classifier's logits for it, to compare an exported model with."""
    batch = torch.randn(7, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return batch, classifier.eval()(batch)


def test_exported_torchscript_and_onnx_give_the_checkpoints_outputs(
    trained: tuple[Path, str], tiny_mnist: Path, tmp_path: Path
) -> None:
    checkpoint, _ = trained
    result = run_script("export.py", str(checkpoint), "--out", str(tmp_path), data_dir=tiny_mnist)
    assert result.returncode == 0, result.stderr
    preprocessing = json.loads((tmp_path / "preprocessing.json").read_text())
    classifier, _, saved = trained_classifier(checkpoint)
    assert (preprocessing["mean"], preprocessing["std"]) == (
        saved["MNISTDataModule"]["mean"],
        saved["MNISTDataModule"]["std"],
    )

    batch, expected = outputs_of(classifier)
    torchscript = torch.jit.load(str(tmp_path / "model.pt"))
    torch.testing.assert_close(torchscript(batch), expected, rtol=1e-5, atol=1e-5)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    (logits,) = session.run(None, {"images": batch.numpy()})
    torch.testing.assert_close(torch.from_numpy(logits), expected, rtol=1e-4, atol=1e-4)


def test_a_run_trained_with_torch_compile_exports_the_checkpoints_outputs(
    trained: tuple[Path, str], tiny_mnist: Path, tmp_path: Path
) -> None:
    checkpoint, _ = trained
    run_dir = tmp_path / "compiled_run"
    shutil.copytree(checkpoint.parent.parent, run_dir)
    config = run_dir / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace("compile: false", "compile: true", 1))
    compiled_checkpoint = run_dir / "checkpoints" / checkpoint.name

    result = run_script(
        "export.py", str(compiled_checkpoint), "--formats", "torchscript", data_dir=tiny_mnist
    )
    assert result.returncode == 0, result.stderr
    classifier, run, _ = trained_classifier(compiled_checkpoint)
    assert run.classifier.compile
    batch, expected = outputs_of(classifier)
    torchscript = torch.jit.load(str(run_dir / "export" / "model.pt"))
    torch.testing.assert_close(torchscript(batch), expected, rtol=1e-5, atol=1e-5)
