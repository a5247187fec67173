"""The learning-rate range test, `python train.py tune=lr_find`: the suggestion it prints against the
curve it logs, what it logs and saves, that it trains nothing for good, that the rate it sweeps is the
one every optimizer steps with whatever the run's scheduler, and its rules."""

import csv
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_classifier import lr_find
from mnist_classifier.config import compose, preflight, validate
from mnist_classifier.errors import BadInput
from mnist_classifier.module import Classifier

from .conftest import TINY_RUN, run_script

# The README's command, with a short test on the tiny data (TINY_RUN) to be quick.
STEPS = 30
COMMAND = ["tune=lr_find", f"tune.num_training={STEPS}", *TINY_RUN, "trainer.accelerator=cpu"]
# Lightning's suggestion: the steepest fall of the smoothed loss, leaving out the first 10 steps and the last.
SKIP_BEGIN, SKIP_END = 10, 1


def summary(output: str) -> dict[str, str]:
    """The lines the run printed through the mnist_classifier logger, as {name: value}."""
    lines = re.findall(r"\[mnist_classifier\]\[INFO\] - ([^:]+):\s+(.*)", output)
    return {name: value.strip() for name, value in lines}


def events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def curve(accumulator: EventAccumulator) -> tuple[np.ndarray, np.ndarray]:
    """The logged rates and losses, by step; each step once."""
    tags = (lr_find.RATE_TAG, lr_find.LOSS_TAG)
    rates, losses = ({event.step: event.value for event in accumulator.Scalars(tag)} for tag in tags)
    steps = sorted(rates)
    assert steps == sorted(losses) == list(range(len(steps)))
    return np.array([rates[step] for step in steps]), np.array([losses[step] for step in steps])


def steepest_fall(rates: np.ndarray, losses: np.ndarray) -> float:
    """The rate where the loss falls fastest against the rate, outside the skipped ends."""
    rates, losses = rates[SKIP_BEGIN:-SKIP_END], losses[SKIP_BEGIN:-SKIP_END]
    finite = np.isfinite(losses)
    rates, losses = rates[finite], losses[finite]
    return float(rates[np.argmin(np.gradient(losses, rates))])


@pytest.mark.slow  # a process that trains the range test's steps
def test_the_range_test_prints_the_steepest_fall_of_the_curve_it_logs_and_trains_nothing(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    done = run_script("train.py", *COMMAND, f"hydra.run.dir={run_dir}", data_dir=tiny_mnist, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    shown = summary(done.stdout)
    printed = float(shown["suggested rate"].split(",")[0])
    tune = OmegaConf.load(run_dir / ".hydra" / "config.yaml").tune

    # The truth: the curve in TensorBoard, and its steepest fall computed here.
    accumulator = events(run_dir)
    rates, losses = curve(accumulator)
    assert tune.min_lr <= printed <= tune.max_lr
    assert rates[0] == pytest.approx(tune.min_lr) and np.all(np.diff(rates) > 0)
    assert printed == pytest.approx(steepest_fall(rates, losses), rel=5e-3)  # printed to 3 digits
    swept = f"{rates[0]:.3g} to {rates[-1]:.3g}, {tune.mode}, in {len(rates)} steps"
    assert shown["swept"].startswith(swept)
    if len(rates) < STEPS:  # stopped early: only a diverging loss may end it, not the run's 2 epochs
        assert f"the loss passed {tune.early_stop_threshold:g}x its lowest" in shown["swept"]
    else:
        assert rates[-1] == pytest.approx(tune.max_lr)
    assert "peak of scheduler=onecycle's cycle" in shown["it sets"]

    # The command it prints is this run's with the suggested rate, and a valid one.
    command = shlex.split(shown["use it"])
    assert command[:2] == ["python", "train.py"] and command[-1] == f"optimizer.lr={printed:.3g}"
    assert command[2:-1] == COMMAND[2:]  # the run's own overrides, not the test's
    preflight(command[2:])
    cfg = compose(command[2:], output_dir=tmp_path / "next")
    assert cfg.optimizer.lr == printed and cfg.get("tune") is None

    # The plot: in TensorBoard's images, and as a file.
    (image,) = accumulator.Images(lr_find.FIGURE_TAG)
    plot = Path(shown["plot"])
    assert plot == run_dir / "lr_find.png"
    with Image.open(plot) as saved:
        assert saved.format == "PNG" and saved.size == (image.width, image.height)

    # Nothing but the range test: no checkpoint, Lightning's own one removed, and no other curve
    # or image (training's, validation's, the learning-rate monitor's, the dashboards').
    assert not (run_dir / "checkpoints").exists() and not list(run_dir.rglob("*.ckpt"))
    assert set(accumulator.Tags()["scalars"]) == {lr_find.RATE_TAG, lr_find.LOSS_TAG}
    assert accumulator.Tags()["images"] == [lr_find.FIGURE_TAG]


OPTIMIZERS = ["sgd", "nesterov", "adam", "adamw", "rmsprop"]
SCHEDULERS = ["none", "step", "cosine", "onecycle"]  # onecycle: the default, with every optimizer above
RUNS = [[f"optimizer={name}"] for name in OPTIMIZERS] + [[f"scheduler={name}"] for name in SCHEDULERS[:-1]]


@pytest.mark.slow  # trains the range test's steps
@pytest.mark.parametrize("choice", RUNS, ids=[run[0] for run in RUNS])
def test_each_optimizer_steps_at_the_swept_rate_whatever_the_scheduler_and_keeps_its_weights(
    compose_config, choice: list[str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = compose_config(*COMMAND, *choice)
    stepped_at: list[float] = []  # the rate in the optimizer at each training step
    step = Classifier.training_step

    def recording(self: Classifier, batch, batch_idx: int) -> torch.Tensor:
        stepped_at.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        return step(self, batch, batch_idx)

    built, build_run = [], lr_find.build

    def build(cfg, resume_from=None):
        datamodule, classifier, trainer = build_run(cfg, resume_from)
        built.append((classifier, {key: value.clone() for key, value in classifier.state_dict().items()}))
        return datamodule, classifier, trainer

    monkeypatch.setattr(Classifier, "training_step", recording)
    monkeypatch.setattr(lr_find, "build", build)
    with caplog.at_level("INFO", logger="mnist_classifier"):
        results = lr_find.find_lr(cfg)

    rates, _ = curve(events(Path(cfg.paths.output_dir)))
    assert stepped_at == pytest.approx(rates.tolist(), rel=1e-6)  # the logged values are float32
    assert (
        list(results) == [lr_find.SUGGESTED]
        and cfg.tune.min_lr <= results[lr_find.SUGGESTED] <= cfg.tune.max_lr
    )
    (classifier, initial), *_ = built
    for key, value in classifier.state_dict().items():  # Lightning reloaded the initial weights
        assert torch.equal(value, initial[key]), key
    scheduler = cfg.hydra.runtime.choices.scheduler
    assert re.search(rf"it sets:\s+optimizer.lr, {re.escape(lr_find.RATE_MEANING[scheduler])}", caplog.text)


@pytest.mark.slow  # trains the range test's steps
def test_every_logger_gets_the_curve(compose_config) -> None:
    cfg = compose_config(*COMMAND, "logger=tensorboard_csv")
    lr_find.find_lr(cfg)
    run_dir = Path(cfg.paths.output_dir)
    rates, losses = curve(events(run_dir))
    with open(run_dir / "csv" / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["step"]) for row in rows] == list(range(len(rates)))
    assert [float(row[lr_find.RATE_TAG]) for row in rows] == pytest.approx(rates.tolist(), rel=1e-6)
    assert [float(row[lr_find.LOSS_TAG]) for row in rows] == pytest.approx(losses.tolist(), rel=1e-6)


@pytest.mark.slow  # trains a few steps
def test_a_test_stopped_too_early_to_suggest_fails_with_its_plot_kept(compose_config) -> None:
    cfg = compose_config(*COMMAND, "tune.early_stop_threshold=1.01")  # any rise of the loss stops it
    with pytest.raises(RuntimeError, match=r"the range test stopped after \d+ steps, too few to suggest"):
        lr_find.find_lr(cfg)
    assert (Path(cfg.paths.output_dir) / "lr_find.png").is_file()


@pytest.mark.parametrize(
    ("key", "good", "bad", "allowed"),
    [
        ("tune.min_lr", [1e-8, 0.5], [0, -1, "x"], "a number > 0 (the rate of the first step)"),
        ("tune.num_training", [20, 500], [19, 0, 2.5], "an integer >= 20"),
        ("tune.mode", ["linear", "exponential"], ["cubic"], "one of exponential, linear"),
        ("tune.early_stop_threshold", [None, 1.5, 4], [1, 0.5], "a number > 1, or null"),
    ],
)
def test_the_tune_rules_accept_their_values_and_refuse_others(
    compose_config, key: str, good: list, bad: list, allowed: str
) -> None:
    cfg = compose_config("tune=lr_find")
    for value in good:
        OmegaConf.update(cfg, key, value)
        validate(cfg)
    for value in bad:
        OmegaConf.update(cfg, key, value)
        with pytest.raises(BadInput, match=re.escape(f"is invalid: {allowed}")):
            validate(cfg)


@pytest.mark.parametrize(
    "argv", [[], ["trainer=cpu"], ["optimizer=adam", "scheduler=none"], ["debug=overfit"]]
)
def test_preflight_lets_a_range_test_on_one_device_through(tiny_mnist: Path, argv: list[str]) -> None:
    preflight([f"data.data_dir={tiny_mnist}", "data.val_size=40", "tune=lr_find", *argv])
