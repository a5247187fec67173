"""train.py end to end: the shared run as a user ran it, runs in this process for what the groups
change, and processes for what only a process shows (DDP, signals, kill and resume)."""

import csv
import itertools
import json
import os
import re
import signal
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from mnist_classifier.augment import RandomAffine
from mnist_classifier.averaging import RAW_WEIGHTS
from mnist_classifier.checkpoint_files import RECORD
from mnist_classifier.data import MNISTDataModule
from mnist_classifier.datasets import read_split
from mnist_classifier.models import LeNet
from mnist_classifier.training import build, quiet_libraries, run

from .conftest import ROOT, TINY_RUN, TrainedRun, data_set, run_script, user_environment, wait_for


def train(*overrides: str, data_dir: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return run_script("train.py", *overrides, data_dir=data_dir, cwd=cwd)


def csv_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv") as file:
        return list(csv.DictReader(file))


def evaluate_outside_lightning(checkpoint: Path, data_dir: Path, bf16: bool = False) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of a LeNet checkpoint on the test split, in plain torch: the
    net from its record and weights, the images resized and normalised as its record says; under
    bf16 autocast if `bf16`, as Lightning's bf16-mixed runs it."""
    saved = torch.load(checkpoint, weights_only=True)
    record = saved[RECORD]
    assert record["model"]["_target_"] == "mnist_classifier.models.LeNet"
    net = LeNet(**{key: value for key, value in record["model"].items() if key != "_target_"})
    weights = saved["state_dict"]
    net.load_state_dict({key.removeprefix("net."): weights[key] for key in weights if key.startswith("net.")})
    images, labels = read_split(data_dir, data_set("mnist"), train=False)
    size = [record["image_size"]] * 2
    inputs = TF.resize(images.unsqueeze(1).float() / 255, size, TF.InterpolationMode.BILINEAR, antialias=True)
    inputs = (inputs - record["mean"]) / record["std"]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = net.eval()(inputs)
        loss = F.cross_entropy(logits, labels)
    return (logits.argmax(dim=1) == labels).float().mean().item(), loss.item()


def training_curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every training and validation curve of a run's TensorBoard events, as (step, value) pairs."""
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {
        tag: sorted((event.step, event.value) for event in events.Scalars(tag))
        for tag in events.Tags()["scalars"]
        if tag.startswith(("train/", "val/", "lr-"))
    }


def test_the_run_dir_holds_the_config_checkpoints_events_and_what_reproduces_it(
    trained_run: TrainedRun,
) -> None:
    run_dir = trained_run.run_dir
    assert "trainer.max_epochs=2" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert "_target_: mnist_classifier.models.LeNet" in (run_dir / ".hydra" / "config.yaml").read_text()
    assert trained_run.last.is_file() and trained_run.best.name.startswith("epoch")
    assert list(run_dir.glob("events.out.tfevents.*"))
    log = (run_dir / "train.log").read_text()
    assert "best val accuracy" in log  # the log keeps the summary
    # The net's summary, once: the run log's (Lightning's ModelSummary callback is off).
    parameters = sum(parameter.numel() for parameter in LeNet().parameters())
    assert re.search(rf"\| net +\| LeNet +\| {parameters / 1000:.1f} K", log)
    assert log.count("Total params") == 1

    record = json.loads((run_dir / ".hydra" / "environment.json").read_text())
    assert record["packages"]["torch"] == metadata.version("torch")
    assert record["command"][0] == "train.py" and "trainer.max_epochs=2" in record["command"]
    assert record["cpu_kernels"] == torch.backends.cpu.get_cpu_capability()  # the kernels torch took
    assert record["cpu_numerics"]["ATEN_CPU_CAPABILITY"] == os.environ.get("ATEN_CPU_CAPABILITY")

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    assert record["git"]["commit"] == git("rev-parse", "HEAD")


def test_tensorboard_events_hold_every_metric_and_the_hparams(trained_run: TrainedRun) -> None:
    events = EventAccumulator(str(trained_run.run_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {"train/loss_step", "train/loss_epoch", "train/acc", "val/loss", "val/acc", "val/acc_best",
                "test/loss", "test/acc", "lr-SGD"}  # fmt: skip
    assert expected <= tags
    assert [event.step for event in events.Scalars("train/loss_step")][:5] == [0, 1, 2, 3, 4]  # every step
    best = [event.value for event in events.Scalars("val/acc_best")]
    assert best[-1] == pytest.approx(max(event.value for event in events.Scalars("val/acc")))
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = HParamsPluginData.FromString(content).session_start_info.hparams
    assert (hparams["model"].string_value, hparams["optimizer"].string_value) == ("lenet", "nesterov")
    assert hparams["data.val_size"].number_value == 40


def test_the_output_ends_with_the_summary(trained_run: TrainedRun) -> None:
    lines = trained_run.output.strip().splitlines()
    summary = [re.sub(r"^\[.*?\]\[.*?\]\[INFO\] - ", "", line) for line in lines[-7:]]
    names = [line.split(":")[0] for line in summary]
    assert names == [
        "epoch 2/2",
        "best val accuracy",
        "best epoch",
        "test accuracy",
        "checkpoint",
        "run dir",
        "dashboards",
    ]
    assert summary[4].endswith(str(trained_run.best)) and summary[5].endswith(str(trained_run.run_dir))


@pytest.mark.slow
def test_a_run_prints_no_library_noise(tiny_mnist: Path, tmp_path: Path) -> None:
    """In a process of its own, as a user sees it: in pytest's process, warnings are held back."""
    result = run_script("train.py", *TINY_RUN, f"hydra.run.dir={tmp_path / 'run'}", data_dir=tiny_mnist)
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout
    for noise in ("Warning", "warn(", "Test metric", "litlogger", "GPU available", "it/s]", "Tip:"):
        assert noise not in result.stdout + result.stderr, noise


@pytest.mark.slow
def test_two_runs_started_in_the_same_second_get_a_run_dir_each(tiny_mnist: Path, tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "train.py"), "debug=fast", "data.val_size=40"]
    env = user_environment(tiny_mnist)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    runs = [subprocess.Popen(command, cwd=tmp_path, env=env, **quiet) for _ in range(2)]
    for process in runs:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    assert len(list(tmp_path.glob("outputs/*/*/.hydra"))) == 2  # not one dir that both wrote into


def test_two_runs_of_one_seed_train_bitwise_equal_weights_and_another_seed_does_not(
    compose_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights, metrics = {}, {}
    # "other" keeps the first run's order and distortions: only the seed of its initial weights differs.
    for name, seed in (("first", 7), ("second", 7), ("other", 8)):
        monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)  # each run as in a process of its own
        order = ("data.shuffle_seed=7", "augment.seed=7")
        cfg = compose_config(*TINY_RUN, "logger=csv", f"seed={seed}", "augment=affine", *order)
        cfg.paths.output_dir = str(tmp_path / name)
        run(cfg)
        weights[name] = torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)[
            "state_dict"
        ]
        metrics[name] = (tmp_path / name / "csv" / "metrics.csv").read_text()
    assert weights["first"].keys() == weights["second"].keys()
    assert all(torch.equal(weights["first"][key], weights["second"][key]) for key in weights["first"])
    assert metrics["first"] == metrics["second"]
    assert not torch.equal(weights["first"]["net.fc3.weight"], weights["other"]["net.fc3.weight"])
    rows = list(csv.DictReader(metrics["first"].splitlines()))
    assert len([row for row in rows if row["train/loss_step"]]) == 10  # 5 steps an epoch, logged each step


@pytest.mark.slow
def test_the_loss_and_the_schedule_chosen_are_the_ones_trained_with(compose_config, tmp_path: Path) -> None:
    first_losses = {}
    for loss in ("cross_entropy", "mse"):
        cfg = compose_config(
            *TINY_RUN, f"loss={loss}", "scheduler=onecycle", "logger=csv", "optimizer.lr=0.05"
        )
        cfg.paths.output_dir = str(tmp_path / loss)
        run(cfg)
        rows = csv_rows(tmp_path / loss)
        first_losses[loss] = float(next(row["train/loss_step"] for row in rows if row["train/loss_step"]))
        rates = [float(row["lr-SGD"]) for row in rows if row.get("lr-SGD")]
        peak = rates.index(max(rates))
        assert len(rates) == 10 and 0 < peak < 9  # one-cycle: the rate moves every step, up then down
        assert all(a < b for a, b in itertools.pairwise(rates[: peak + 1]))
        assert all(a > b for a, b in itertools.pairwise(rates[peak:]))
        assert max(rates) == pytest.approx(0.05)
    # At the start the logits are near 0: cross entropy near ln 10, the MSE against one-hot near 0.1.
    assert first_losses["cross_entropy"] > 2.0 and first_losses["mse"] < 0.5


@pytest.mark.slow
def test_debug_overfit_drives_the_training_loss_down_on_three_batches(compose_config, tmp_path: Path) -> None:
    results = run(compose_config("data.val_size=40", "data.batch_size=16", "debug=overfit", "logger=csv"))
    rows = csv_rows(tmp_path / "run")
    epoch_losses = [float(row["train/loss_epoch"]) for row in rows if row["train/loss_epoch"]]
    assert epoch_losses[-1] < 0.1 * epoch_losses[0]
    assert float([row["train/acc"] for row in rows if row["train/acc"]][-1]) == 1.0
    assert results["epochs"] == 60


@pytest.mark.slow
def test_early_stopping_ends_a_run_whose_validation_accuracy_stops_improving(compose_config) -> None:
    results = run(compose_config(*TINY_RUN, "callbacks=early_stopping", "trainer.max_epochs=60"))
    assert results["epochs"] < 60 and results["epochs"] - results["best_epoch"] <= 3


@pytest.mark.slow
def test_debug_fast_runs_everything_and_leaves_no_checkpoints_or_events(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    result = train("debug=fast", "data.val_size=40", f"hydra.run.dir={tmp_path}", data_dir=tiny_mnist)
    assert result.returncode == 0, result.stderr
    assert "test accuracy:" in result.stdout
    assert not (tmp_path / "checkpoints").exists() and not list(tmp_path.rglob("events.out.tfevents.*"))


@pytest.mark.slow
def test_a_run_with_the_logger_removed_trains_and_writes_no_events(compose_config, tmp_path: Path) -> None:
    results = run(compose_config(*TINY_RUN, "~logger"))
    assert results["test/acc"] >= 0
    assert list((tmp_path / "run" / "checkpoints").glob("epoch*.ckpt"))
    assert not list((tmp_path / "run").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_bad_input_from_the_command_line_is_one_line_and_status_2(tiny_mnist: Path, tmp_path: Path) -> None:
    for argv in (["optimizer.lr=-1"], ["-m", "optimizer=sgd,adagrad"]):
        result = train(*argv, f"paths.log_dir={tmp_path}", data_dir=tiny_mnist)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith("error: ") and not list(tmp_path.iterdir())  # no run dir made


@pytest.mark.slow
def test_two_ddp_processes_validate_like_one_process(tiny_mnist: Path, tmp_path: Path) -> None:
    # 41 validation images: shards of 21 and 20, so an uneven split must still count each once.
    shape = ["data.val_size=41", "data.batch_size=16", "trainer.max_epochs=1"]
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
    result = train(*shape, *ddp, f"hydra.run.dir={tmp_path}", data_dir=tiny_mnist)
    assert result.returncode == 0, result.stderr
    assert (result.stdout + result.stderr).count("test accuracy:") == 1  # one summary, from rank 0

    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    # 79 training images over 2 processes: 39 each, 3 batches of 16, so 3 optimizer steps.
    assert checkpoint["global_step"] == 3
    net = LeNet()
    net.load_state_dict({key.removeprefix("net."): value for key, value in checkpoint["state_dict"].items()
                         if key.startswith("net.")})  # fmt: skip
    datamodule = MNISTDataModule(tiny_mnist, data_set("mnist"), val_size=41, download=False)
    datamodule.setup("fit")
    images, labels = datamodule.val_set
    with torch.no_grad():
        single_process = (net.eval()(images).argmax(1) == labels).float().mean().item()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    (logged,) = events.Scalars("val/acc")
    assert logged.value == pytest.approx(single_process, abs=1e-6)


def saved_step(path: Path) -> int:
    """The global step of a checkpoint; -1 while it is missing or being written."""
    try:
        return torch.load(path, weights_only=True)["global_step"]
    except (OSError, RuntimeError, EOFError, KeyError):
        return -1


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_from_its_last_checkpoint_and_continues(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    # 20 epochs of 5 steps, last.ckpt every 3 steps: most checkpoints fall mid-epoch.
    overrides = [*TINY_RUN, "trainer.max_epochs=20", "callbacks.last_checkpoint.every_n_train_steps=3"]
    env = user_environment(tiny_mnist)
    outputs = tmp_path / "outputs"
    command = [sys.executable, str(ROOT / "train.py"), *overrides]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        # Killed once a mid-epoch checkpoint (step 12 is in epoch 3) is saved and the run went on past it.
        wait_for(lambda: any(saved_step(path) >= 12 for path in outputs.glob("*/*/checkpoints/last.ckpt")),
                 process, what="a checkpoint at step 12", poll_s=0.05)  # fmt: skip
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it was killed"
    (run_dir,) = {path.parent.parent for path in outputs.glob("*/*/checkpoints/last.ckpt")}
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert 12 <= saved["global_step"] < 100

    result = subprocess.run(
        [*command, "ckpt_path=last"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert f"resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in result.stdout + result.stderr
    final = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert (final["epoch"], final["global_step"]) == (19, 99)  # the last of every 3 steps, in epoch 20

    # The curves go on in the same TensorBoard run: every step and epoch is there, and only the
    # steps redone after the checkpoint (the work the kill lost) appear twice.
    events = EventAccumulator(str(run_dir))
    events.Reload()
    # Lightning writes (and flushes) a step's logs just after that step's checkpoint: a kill
    # between the two loses that one point, and the resumed run starts after it. A checkpoint at
    # an epoch's last step also comes before that epoch's validation, which is not run again.
    checkpoint_step = saved["global_step"] - 1
    lost_val = {checkpoint_step} if saved["global_step"] % 5 == 0 else set()
    for tag, expected, may_lose in (
        ("train/loss_step", set(range(100)), {checkpoint_step}),
        ("val/acc", set(range(4, 100, 5)), lost_val),
    ):
        steps = [event.step for event in events.Scalars(tag)]
        assert expected - may_lose <= set(steps) <= expected, tag
        assert all(step >= saved["global_step"] for step in steps if steps.count(step) > 1), tag


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stop", "how"), [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "Ctrl-C")], ids=["sigterm", "ctrl-c"]
)
def test_a_stopped_run_saves_its_last_checkpoint_and_exits_1_with_one_line(
    tiny_mnist: Path, tmp_path: Path, stop: signal.Signals, how: str
) -> None:
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        *TINY_RUN,
        "trainer.max_epochs=100",
        f"hydra.run.dir={tmp_path}",
    ]
    # Ctrl-C's default action for the run, as in a terminal: a child inherits an ignored SIGINT, and
    # the test's process may ignore it (Lightning ignores it once it has handled a Ctrl-C).
    process = subprocess.Popen(command, env=user_environment(tiny_mnist), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    last = tmp_path / "checkpoints" / "last.ckpt"
    wait_for(lambda: saved_step(last) >= 10, process, what="two epochs' checkpoint", poll_s=0.05)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1
    assert stderr.strip().splitlines() == [
        f"error: stopped by {how}; saved {last}, resume with ckpt_path=last"
    ]
    # Saved when stopped: the checkpoint holds every step the run logged (one a step), not only those
    # of its last whole epoch. SIGTERM stops the run between steps; Ctrl-C can land inside one, after
    # its update and before its loss is written, so that one step may be saved without its point.
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    logged = max(event.step for event in events.Scalars("train/loss_step"))
    in_flight = 1 if stop == signal.SIGINT else 0
    assert 10 <= logged + 1 <= saved_step(last) <= logged + 1 + in_flight < 500


def test_ckpt_path_last_after_a_finished_run_trains_nothing_more_and_reports_it_again(
    compose_config, tmp_path: Path, caplog
) -> None:
    first = run(compose_config(*TINY_RUN, "~logger"))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    finished = torch.load(last, weights_only=True)
    with caplog.at_level("INFO", logger="mnist_classifier"):
        again = run(compose_config(*TINY_RUN, "~logger", "ckpt_path=last"))
    assert f"resuming from {last}" in caplog.text
    assert torch.load(last, weights_only=True)["global_step"] == finished["global_step"] == 10
    assert again["test/acc"] == first["test/acc"] and again["epochs"] == first["epochs"] == 2
    assert again["val/acc_best"] == first["val/acc_best"]  # the checkpoint's best, not NaN


@pytest.mark.slow
def test_a_sweep_run_again_with_ckpt_path_last_resumes_each_job_in_its_run_dir(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    sweep = ["-m", "seed=1,2", *TINY_RUN, "~logger"]
    assert train(*sweep, data_dir=tiny_mnist, cwd=tmp_path).returncode == 0
    jobs = sorted(tmp_path.glob("outputs/multiruns/*/*/*/checkpoints/last.ckpt"))
    assert len(jobs) == 2
    result = train(*sweep, "ckpt_path=last", data_dir=tiny_mnist, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for checkpoint in jobs:
        assert f"resuming from {checkpoint}" in result.stdout + result.stderr


def test_a_bf16_mixed_run_tests_its_best_checkpoint_under_bf16_autocast(
    compose_config, tiny_mnist: Path, tmp_path: Path
) -> None:
    results = run(compose_config(*TINY_RUN, "trainer.precision=bf16-mixed", "~logger"))
    (best,) = (tmp_path / "run" / "checkpoints").glob("epoch*.ckpt")
    accuracy, loss = evaluate_outside_lightning(best, tiny_mnist, bf16=True)
    _, full_precision_loss = evaluate_outside_lightning(best, tiny_mnist)
    assert results["epochs"] == 2
    assert results["test/acc"] == pytest.approx(accuracy, abs=1e-6)
    assert results["test/loss"] == pytest.approx(loss, rel=1e-6)
    # ... which is bf16's loss, not the full-precision one: the test ran under autocast.
    assert results["test/loss"] != pytest.approx(full_precision_loss, rel=1e-5)


@pytest.mark.slow
def test_a_run_failing_mid_fit_exits_1_with_one_line_and_its_traceback_in_train_log(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    # Checkpoints that cannot be written: found when the first epoch's is saved, after training began.
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    result = train(*TINY_RUN, f"callbacks.last_checkpoint.dirpath={blocked}/checkpoints",
                   f"hydra.run.dir={tmp_path / 'run'}", data_dir=tiny_mnist)  # fmt: skip
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: ") and "a-file" in line
    log = (tmp_path / "run" / "train.log").read_text()
    assert "Traceback (most recent call last)" in log and "epoch 1/2" in log  # it had trained an epoch


# A rate of 0.1 in the first epoch and three times that in the second, which undoes what the first
# learnt: val/acc falls after the first epoch, whose checkpoint is the best.
FALLING = ["scheduler=step", "scheduler.scheduler.step_size=1", "scheduler.scheduler.gamma=3"]


def test_the_tested_checkpoint_is_the_best_epochs_not_the_last(
    compose_config, tiny_mnist: Path, tmp_path: Path
) -> None:
    results = run(compose_config(*TINY_RUN, "~logger", *FALLING))
    checkpoints = tmp_path / "run" / "checkpoints"
    (best,) = checkpoints.glob("epoch*.ckpt")
    best_accuracy, _ = evaluate_outside_lightning(best, tiny_mnist)
    last_accuracy, _ = evaluate_outside_lightning(checkpoints / "last.ckpt", tiny_mnist)
    assert results["test/acc"] == pytest.approx(best_accuracy, abs=1e-6)
    assert torch.load(best, weights_only=True)["epoch"] == 0
    assert (results["best_epoch"], results["epochs"]) == (1, 2)
    assert abs(best_accuracy - last_accuracy) >= 0.1  # the test tells the two apart


class FirstTrainingBatch(L.Callback):
    """Keeps the images of the first training step as the model gets them."""

    def __init__(self) -> None:
        self.images: torch.Tensor | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.images is None:
            self.images = batch[0].clone()


@pytest.mark.parametrize("augment", ["affine", "none"])
def test_the_built_run_trains_on_the_distortions_its_augment_group_names(
    compose_config, augment: str
) -> None:
    cfg = compose_config(*TINY_RUN, "~logger", "trainer.max_epochs=1", f"augment={augment}")
    quiet_libraries()  # as run() does before it builds
    datamodule, classifier, trainer = build(cfg)
    first = FirstTrainingBatch()
    trainer.callbacks.append(first)
    trainer.fit(classifier, datamodule=datamodule)
    cut = datamodule.train_dataloader()  # the first epoch's batches as cut, undistorted
    cut.set_epoch(0)
    plain, _ = next(iter(cut))
    if augment == "none":
        assert torch.equal(first.images, plain)
        return
    settings = {key: value for key, value in cfg.augment.items() if key != "_target_"}
    torch.testing.assert_close(first.images, RandomAffine(**settings)(plain, step=0))
    assert (first.images - plain).abs().amax() > 1  # distorted, not nearly the same


@pytest.mark.parametrize("callbacks", ["default", "ema"])
def test_a_run_stopped_after_an_epoch_and_resumed_ends_as_a_run_straight_through(
    compose_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, callbacks: str
) -> None:
    """Bitwise, as two runs of one seed are. With the moving average (callbacks=ema), the resumed run
    trains on from its own weights, not from the average its checkpoint holds as its weights."""
    # The rate changes at the second epoch, so the schedule's state must be resumed as well, and the
    # best epoch is the first, which the resumed run must remember.
    common = [*TINY_RUN, f"callbacks={callbacks}", *FALLING]
    runs = {
        "through": ["trainer.max_epochs=2"],
        "stopped": ["trainer.max_epochs=1"],
        "resumed": [
            "trainer.max_epochs=2",
            f"ckpt_path={tmp_path / 'stopped' / 'checkpoints' / 'last.ckpt'}",
        ],
    }
    results = {}
    for name, overrides in runs.items():
        monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)  # each run as in a process of its own
        cfg = compose_config(*common, *overrides)
        cfg.paths.output_dir = str(tmp_path / ("stopped" if name == "resumed" else name))
        results[name] = run(cfg)
    through, resumed = (
        torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)
        for name in ("through", "stopped")
    )
    kinds = ["state_dict", RAW_WEIGHTS] if callbacks == "ema" else ["state_dict"]
    for kind in kinds:  # the weights saved (the average, with ema) and those trained
        assert through[kind].keys() == resumed[kind].keys()
        assert [key for key in through[kind] if not torch.equal(through[kind][key], resumed[kind][key])] == []
    assert results["resumed"]["val/acc_best"] == results["through"]["val/acc_best"]
    assert results["resumed"]["test/acc"] == results["through"]["test/acc"]
    curves = training_curves(tmp_path / "through")
    assert {"train/loss_step", "train/acc", "val/acc", "val/acc_best", "lr-SGD"} <= curves.keys()
    assert training_curves(tmp_path / "stopped") == curves
