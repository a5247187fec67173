"""Extending the project without editing it, as the README's Extending section shows: its files (a
net of the user's own, the model and data set YAMLs) and its commands are taken from the README
itself; the files are written into a folder outside src/ and conf/ (the README's ~/experiments),
which train.py finds through hydra.searchpath and Python through PYTHONPATH. Each extension, the
net and a 12-class data set in MNIST's IDX layout, runs through train, a 2-job grid, eval, predict,
export and serve's API."""

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from .conftest import ROOT, TINY_RUN, user_environment, write_idx
from .drawings import encoded, page, ring
from .test_serve import Server, post_image

pytestmark = pytest.mark.slow

LETTERS = tuple("abcdefghijkl")  # the README's data set's classes
ONE_EPOCH = [*TINY_RUN, "trainer.max_epochs=1"]
SECTION = (ROOT / "README.md").read_text().split("\n## Extending\n", 1)[1].split("\n## ", 1)[0]
# The section's commands, each run here.
SEARCHPATH = '"hydra.searchpath=[file://$HOME/experiments/conf]"'
TRAIN = {
    "net": f"python train.py {SEARCHPATH} model=tiny",
    "data": f"python train.py {SEARCHPATH} data=letters",
}
GRID = {
    "net": f"python train.py -m {SEARCHPATH} model=tiny,lenet",
    "data": f"python train.py -m {SEARCHPATH} data=letters,mnist",
}
EVAL = "python eval.py CKPT"
SELECTION = "python train.py selection.monitor=val/loss selection.mode=min"


def readme_files() -> dict[str, str]:
    """The files the README's Extending section shows: each code block whose first line is `# <path>`."""
    return dict(re.findall(r"```(?:python|yaml)\n# (\S+)\n(.*?)```", SECTION, re.S))


def argv(command: str, experiments: Path, *more: str) -> list[str]:
    """A README command's arguments after `python SCRIPT`, with the test's folder for ~/experiments."""
    words = shlex.split(command.replace("$HOME/experiments", str(experiments)))
    return [*words[2:], *more]


def test_the_section_shows_the_commands_run_here() -> None:
    shown = [re.sub(r"\s+#.*$", "", line).strip() for line in re.findall(r"^python .*$", SECTION, re.M)]
    assert sorted(shown) == sorted([*TRAIN.values(), *GRID.values(), EVAL, SELECTION])


def letters(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable 28x28 images of 12 classes: class k is a bright bar at row 2 + 2k, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.arange(count) % len(LETTERS))[torch.randperm(count, generator=generator)]
    images = torch.randint(0, 60, (count, 28, 28), generator=generator)
    for index, label in enumerate(labels.tolist()):
        images[index, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
    return images.to(torch.uint8), labels.to(torch.uint8)


@pytest.fixture(scope="module")
def experiments(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user's folder: the README's files, and the letters' IDX files in data/Letters/raw/."""
    folder = tmp_path_factory.mktemp("experiments")
    files = readme_files()
    assert set(files) == {"mynets.py", "conf/model/tiny.yaml", "conf/data/letters.yaml"}
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    raw = folder / "data" / "Letters" / "raw"
    raw.mkdir(parents=True)
    for prefix, count, seed in (("train", 144, 0), ("t10k", 48, 1)):
        images, labels = letters(count, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return folder


def environment(experiments: Path, tiny_mnist: Path, trust: bool = True) -> dict[str, str]:
    """A user's, as the README sets it: the folder on PYTHONPATH, its module trusted, its data dir."""
    extra = {"PYTHONPATH": str(experiments), "LETTERS_DATA_DIR": str(experiments / "data")}
    env = user_environment(tiny_mnist) | extra | ({"MNIST_CLASSIFIER_TRUST": "mynets"} if trust else {})
    if not trust:
        env.pop("MNIST_CLASSIFIER_TRUST", None)
    return env


def command(script: str, *args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def summary_line(output: str, name: str) -> str:
    return re.search(rf"{name}:\s+(.*)", output).group(1).strip()


@dataclass
class Extended:
    name: str
    run_dir: Path
    output: str  # what train.py printed
    env: dict[str, str]
    classes: tuple[str, ...]
    test_files: Path  # the folder holding the test split's IDX files

    @property
    def best(self) -> Path:
        (checkpoint,) = (self.run_dir / "checkpoints").glob("epoch*.ckpt")
        return checkpoint


@pytest.fixture(scope="module")
def runs(
    experiments: Path, tiny_mnist: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Extended]:
    """Each extension's one short epoch of train.py, run from the user's folder the first time a test
    asks for it."""

    class Runs(dict):
        def __missing__(self, name: str) -> Extended:
            env = environment(experiments, tiny_mnist)
            run_dir = tmp_path_factory.mktemp(name) / "run"
            more = [*ONE_EPOCH, f"hydra.run.dir={run_dir}"]
            result = command("train.py", *argv(TRAIN[name], experiments, *more), env=env, cwd=experiments)
            assert result.returncode == 0, result.stderr
            classes = LETTERS if name == "data" else tuple("0123456789")
            raw = experiments / "data" / "Letters" / "raw" if name == "data" else tiny_mnist / "MNIST" / "raw"
            self[name] = Extended(name, run_dir, result.stderr + result.stdout, env, classes, raw)
            return self[name]

    return Runs()


@pytest.fixture(params=list(TRAIN))
def extended(request, runs: dict[str, Extended]) -> Extended:
    return runs[request.param]


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes, read here with numpy: dimensions after the magic, then data."""
    data = path.read_bytes()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def test_eval_and_the_exported_program_agree_with_the_runs_test_of_its_best_checkpoint(
    extended: Extended, tmp_path: Path
) -> None:
    exported = command(
        "export.py",
        str(extended.best),
        "--out",
        str(tmp_path),
        "--formats",
        "exported",
        env=extended.env,
        cwd=tmp_path,
    )
    assert exported.returncode == 0, exported.stderr
    preprocessing = json.loads((tmp_path / "preprocessing.json").read_text())
    assert tuple(preprocessing["classes"]) == extended.classes
    # The test split by hand, through the exported program alone: no project code.
    images = torch.from_numpy(read_idx(extended.test_files / "t10k-images-idx3-ubyte").copy())
    labels = torch.from_numpy(read_idx(extended.test_files / "t10k-labels-idx1-ubyte").astype(np.int64))
    inputs = TF.resize(images[:, None].float() / 255, [32, 32], antialias=True)
    inputs = (inputs - preprocessing["mean"]) / preprocessing["std"]
    program = torch.export.load(str(tmp_path / "model.pt2")).module()
    with torch.inference_mode():
        logits = program(inputs)
    assert logits.shape == (len(labels), len(extended.classes))
    accuracy = (logits.argmax(dim=1) == labels).float().mean().item()

    evaluated = command(
        "eval.py", *argv(EVAL.replace("CKPT", str(extended.best)), tmp_path), env=extended.env, cwd=tmp_path
    )
    assert evaluated.returncode == 0, evaluated.stderr
    shown = float(re.search(r"test accuracy ([\d.]+)", evaluated.stdout).group(1))
    assert shown == pytest.approx(accuracy, abs=1e-4)
    assert float(summary_line(extended.output, "test accuracy")) == pytest.approx(accuracy, abs=1e-4)
    per_class = evaluated.stdout.split("per class", 1)[1]
    assert all(
        f" {name}: " in per_class for name in set(extended.classes) & set(map(str, labels.unique().tolist()))
    )


def test_predict_and_the_served_api_read_an_image_alike_in_the_extensions_classes(
    extended: Extended, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = tmp_path / "drawn.png"
    image.write_bytes(encoded(page(ring())))
    predicted = command(
        "predict.py",
        str(extended.best),
        str(image),
        "--format",
        "json",
        "--top",
        "3",
        env=extended.env,
        cwd=tmp_path,
    )
    assert predicted.returncode == 0, predicted.stderr
    (answer,) = json.loads(predicted.stdout)
    labels = [guess["label"] for guess in answer["top"]]
    assert set(labels) <= set(extended.classes) and len(labels) == 3

    monkeypatch.setenv("PYTHONPATH", extended.env["PYTHONPATH"])  # the server's trust is its option
    monkeypatch.delenv("MNIST_CLASSIFIER_TRUST", raising=False)
    server = Server(extended.best, extended.test_files.parent.parent, tmp_path, "--trust", "mynets")
    try:
        server.wait()
        status, served = post_image(server, image.read_bytes())
    finally:
        server.stop()
    assert status == 200, served
    assert [guess["label"] for guess in served["top"]] == labels
    assert [guess["probability"] for guess in served["top"]] == pytest.approx(
        [guess["probability"] for guess in answer["top"]], abs=1e-6
    )


def test_a_grid_of_two_jobs_runs_the_extension(extended: Extended, experiments: Path, tmp_path: Path) -> None:
    sweep = argv(GRID[extended.name], experiments, *ONE_EPOCH, f"hydra.sweep.dir={tmp_path}")
    result = command("train.py", *sweep, env=extended.env, cwd=experiments)
    assert result.returncode == 0, result.stderr
    jobs = sorted(path for path in tmp_path.iterdir() if (path / "checkpoints").is_dir())
    assert len(jobs) == 2
    configs = [(job / ".hydra" / "config.yaml").read_text() for job in jobs]
    if extended.name == "net":  # model=tiny,lenet
        assert ["mynets.TinyNet" in configs[0], "models.LeNet" in configs[1]] == [True, True]
    else:  # data=letters,mnist
        assert ["name: letters" in configs[0], "name: mnist" in configs[1]] == [True, True]
    assert "2 jobs: 2 finished" in (tmp_path / "report.md").read_text()


def test_an_untrusted_nets_checkpoint_is_refused_in_one_line_that_says_how_to_trust_it(
    runs: dict[str, Extended], experiments: Path, tiny_mnist: Path, tmp_path: Path
) -> None:
    extended = runs["net"]
    env = environment(experiments, tiny_mnist, trust=False)
    refused = command("eval.py", str(extended.best), env=env, cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f"error: {extended.best} is invalid: its net names _target_ mynets.TinyNet, outside the modules "
        "a checkpoint may name (mnist_classifier.models, torch.nn); if you trust mynets, give --trust "
        "mynets or set MNIST_CLASSIFIER_TRUST=mynets"
    ]
    trusted = command("eval.py", str(extended.best), "--trust", "mynets", env=env, cwd=tmp_path)
    assert trusted.returncode == 0, trusted.stderr


def validation_curve(run_dir: Path, tag: str) -> list[float]:
    """A scalar's values, epoch by epoch, as TensorBoard reads them from the run's event files."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [event.value for event in events.Scalars(tag)]


@pytest.mark.parametrize("mode", ["min", "max"])
def test_another_selection_metric_picks_the_checkpoint_that_is_kept_and_tested(
    mode: str, tiny_mnist: Path, tmp_path: Path
) -> None:
    """The README's command (min), and its mode turned (max): the highest validation loss of a run
    that learns is an early epoch's, so the tested checkpoint cannot be the last by chance."""
    run_dir = tmp_path / "run"
    more = [*TINY_RUN, "trainer.max_epochs=4", f"selection.mode={mode}", f"hydra.run.dir={run_dir}"]
    result = command(
        "train.py", *argv(SELECTION, tmp_path, *more), env=user_environment(tiny_mnist), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    losses = validation_curve(run_dir, "val/loss")
    assert len(losses) == 4
    pick = np.argmin if mode == "min" else np.argmax
    best_epoch = int(pick(losses)) + 1
    if mode == "max":
        assert best_epoch < 4, losses  # the construction: the best epoch is not the last
    output = result.stderr + result.stdout
    assert summary_line(output, "best val loss") == f"{losses[best_epoch - 1]:.4f}"
    assert summary_line(output, "best epoch") == f"{best_epoch} of 4"
    (kept,) = (run_dir / "checkpoints").glob("epoch*.ckpt")
    assert summary_line(output, "checkpoint") == str(kept)
    assert torch.load(kept, weights_only=True)["epoch"] == best_epoch - 1
    evaluated = command("eval.py", str(kept), env=user_environment(tiny_mnist), cwd=tmp_path)
    shown = float(re.search(r"test accuracy ([\d.]+)", evaluated.stdout).group(1))
    assert float(summary_line(output, "test accuracy")) == pytest.approx(shown, abs=1e-4)


def test_with_checkpointing_off_the_final_weights_are_tested_and_the_summary_says_so(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    arguments = [*TINY_RUN, "callbacks.model_checkpoint=null", f"hydra.run.dir={run_dir}"]
    result = command("train.py", *arguments, env=user_environment(tiny_mnist), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    output = result.stderr + result.stdout
    assert summary_line(output, "checkpoint") == (
        "none: the final weights were tested (no checkpoint callback monitors val/acc)"
    )
    last = run_dir / "checkpoints" / "last.ckpt"  # the final weights
    evaluated = command("eval.py", str(last), env=user_environment(tiny_mnist), cwd=tmp_path)
    shown = float(re.search(r"test accuracy ([\d.]+)", evaluated.stdout).group(1))
    assert float(summary_line(output, "test accuracy")) == pytest.approx(shown, abs=1e-4)
