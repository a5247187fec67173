"""eval.py, predict.py and export.py on the shared run's checkpoints, as a user runs them (predict.py's
reading of images: test_predict.py)."""

import json
import re
from pathlib import Path

import onnxruntime
import pytest
import torch

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


@pytest.mark.slow
def test_exported_torchscript_and_onnx_give_the_checkpoints_outputs(
    trained_run: TrainedRun, tmp_path: Path
) -> None:
    assert script_module("export.py").main([str(trained_run.best), "--out", str(tmp_path)]) == 0
    model = load_for_inference(trained_run.best)
    preprocessing = json.loads((tmp_path / "preprocessing.json").read_text())
    assert (preprocessing["mean"], preprocessing["std"]) == (model.mean, model.std)
    assert preprocessing["classes"] == list(model.classes)

    batch = torch.randn(7, 1, 32, 32, generator=torch.Generator().manual_seed(0))  # another batch size
    with torch.inference_mode():
        expected = model.net(batch)
    torchscript = torch.jit.load(str(tmp_path / "model.pt"))
    torch.testing.assert_close(torchscript(batch), expected, rtol=1e-5, atol=1e-5)
    (logits,) = onnxruntime.InferenceSession(str(tmp_path / "model.onnx")).run(
        None, {"images": batch.numpy()}
    )
    torch.testing.assert_close(torch.from_numpy(logits), expected, rtol=1e-4, atol=1e-4)
