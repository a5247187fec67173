"""eval.py, predict.py and export.py on the shared run's checkpoints, as a user runs them (predict.py's
reading of images: test_predict.py)."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import torch

from mnist_classifier.datasets import read_split
from mnist_classifier.inference import load_for_inference

from .conftest import TrainedRun, run_script, script_module


@pytest.mark.slow
def test_eval_prints_the_test_accuracy_that_training_reported(
    trained_run: TrainedRun, tiny_mnist: Path
) -> None:
    result = run_script("eval.py", str(trained_run.best), str(trained_run.last), data_dir=tiny_mnist)
    assert result.returncode == 0, result.stderr
    trained = re.search(r"test accuracy: +([0-9.]+)", trained_run.output).group(1)
    assert (
        re.search(rf"{re.escape(str(trained_run.best))}: test accuracy ([0-9.]+)", result.stdout).group(1)
        == trained
    )
    assert "ensemble of 2: test accuracy" in result.stdout
    per_class = re.search(r"per class \(ensemble of 2\): +(.*)", result.stdout).group(1)
    assert [entry.split(":")[0] for entry in per_class.split()[::2]] == [str(digit) for digit in range(10)]


def test_an_ensemble_of_three_copies_of_a_checkpoint_scores_as_that_checkpoint_alone(
    trained_run: TrainedRun, tiny_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    copies = [tmp_path / f"copy{number}.ckpt" for number in range(3)]
    for copy in copies:
        shutil.copy(trained_run.best, copy)
    main = script_module("eval.py").main
    assert main([*map(str, copies), "--data-dir", str(tiny_mnist)]) == 0
    printed = capsys.readouterr().out
    ensemble = re.search(r"ensemble of 3: test accuracy ([0-9.]+), loss ([0-9.]+)", printed).groups()
    per_class = re.search(r"per class \(ensemble of 3\): +(.*)", printed).group(1)
    # The truth: the checkpoint's own probabilities on the test digits, scored here by hand.
    model = load_for_inference(trained_run.best)
    images, labels = read_split(tiny_mnist, model.dataset, train=False)
    probabilities = model.probabilities(images)
    right = probabilities.argmax(dim=1) == labels
    accuracy = right.double().mean().item()
    loss = -probabilities[torch.arange(len(labels)), labels].double().log().mean().item()
    assert ensemble == (f"{accuracy:.4f}", f"{loss:.4f}")
    for copy in copies:
        assert f"{copy}: test accuracy {accuracy:.4f}, loss {loss:.4f}" in printed
    hits = {digit: right[labels == digit].double().mean().item() for digit in labels.unique().tolist()}
    assert per_class == "  ".join(f"{model.classes[digit]}: {hit:.4f}" for digit, hit in hits.items())


@pytest.mark.slow
@pytest.mark.parametrize("script", ["eval.py", "predict.py", "export.py"])
def test_a_command_refusing_bad_input_prints_one_line_and_exits_2(
    script: str, tiny_mnist: Path, tmp_path: Path
) -> None:
    result = run_script(
        script,
        str(tmp_path / "missing.ckpt"),
        *(["x.png"] if script == "predict.py" else []),
        data_dir=tiny_mnist,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'missing.ckpt'} is invalid: no such checkpoint file"
    ]


# Loads each exported file in a process of its own (no project code imported) and writes its
# logits for the inputs saved beside it.
LOAD_AND_RUN = """
import sys, numpy, torch, onnxruntime
folder = sys.argv[1]
for name in ("1", "37"):
    images = numpy.load(f"{folder}/inputs_{name}.npy")
    exported = torch.export.load(f"{folder}/model.pt2").module()
    torchscript = torch.jit.load(f"{folder}/model.pt")
    onnx = onnxruntime.InferenceSession(f"{folder}/model.onnx")
    with torch.inference_mode():
        outputs = {
            "exported": exported(torch.from_numpy(images)).numpy(),
            "torchscript": torchscript(torch.from_numpy(images)).numpy(),
            "onnx": onnx.run(None, {"images": images})[0],
        }
    for format, logits in outputs.items():
        numpy.save(f"{folder}/logits_{format}_{name}.npy", logits)
"""


@pytest.mark.slow
def test_each_export_format_loads_alone_and_gives_the_checkpoints_logits_on_real_digits(
    trained_run: TrainedRun, tmp_path: Path, mnist_test
) -> None:
    argv = [str(trained_run.best), "--out", str(tmp_path), "--formats", "exported", "onnx", "torchscript"]
    assert script_module("export.py").main(argv) == 0
    model = load_for_inference(trained_run.best)
    preprocessing = json.loads((tmp_path / "preprocessing.json").read_text())
    assert (preprocessing["mean"], preprocessing["std"]) == (model.mean, model.std)
    assert preprocessing["classes"] == list(model.classes)
    expected = {}
    for size in (1, 37):
        inputs = model.inputs(mnist_test[0][100 : 100 + size])
        numpy.save(tmp_path / f"inputs_{size}.npy", inputs.numpy())
        with torch.inference_mode():
            expected[size] = model.net(inputs)
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_AND_RUN, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert loaded.returncode == 0, loaded.stderr
    for format in ("exported", "torchscript", "onnx"):
        for size in (1, 37):
            logits = torch.from_numpy(numpy.load(tmp_path / f"logits_{format}_{size}.npy"))
            torch.testing.assert_close(logits, expected[size], rtol=1e-4, atol=1e-4, msg=format)


@pytest.mark.slow
def test_export_writes_the_exported_program_and_onnx_by_default(
    trained_run: TrainedRun, tmp_path: Path
) -> None:
    assert script_module("export.py").main([str(trained_run.best), "--out", str(tmp_path)]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "model.onnx",
        "model.pt2",
        "preprocessing.json",
    ]
