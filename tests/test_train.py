"""train.py end to end, as a user runs it: a subprocess on the tiny IDX data."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from mnist_classifier.data import MNIST_FILES, MNISTDataModule
from mnist_classifier.models import LeNet

from .conftest import ROOT, TINY_TRAIN, run_script, user_environment

TINY_RUN = ["data.val_size=40", "data.batch_size=16", "trainer.max_epochs=2", "trainer.log_every_n_steps=1"]


def train(*overrides: str, data_dir: Path) -> subprocess.CompletedProcess:
    return run_script("train.py", *overrides, data_dir=data_dir)


@pytest.fixture(scope="module")
def tiny_run(tiny_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    result = train(*TINY_RUN, f"hydra.run.dir={run_dir}", data_dir=tiny_mnist)
    assert result.returncode == 0, result.stderr
    return run_dir, result.stdout + result.stderr


def test_run_dir_holds_the_config_checkpoints_and_events(tiny_run: tuple[Path, str]) -> None:
    run_dir, _ = tiny_run
    assert "trainer.max_epochs=2" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert "_target_: mnist_classifier.models.LeNet" in (run_dir / ".hydra" / "config.yaml").read_text()
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints
    assert any(name.startswith("epoch") for name in checkpoints)
    assert list(run_dir.glob("events.out.tfevents.*"))


def test_run_dir_records_the_package_versions_and_the_git_commit(tiny_run: tuple[Path, str]) -> None:
    run_dir, _ = tiny_run
    record = json.loads((run_dir / ".hydra" / "environment.json").read_text())
    assert record["packages"]["torch"] == metadata.version("torch")
    assert record["command"][0] == "train.py" and "trainer.max_epochs=2" in record["command"]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    assert record["git"]["commit"] == git("rev-parse", "HEAD")
    assert record["git"]["dirty"] == bool(git("status", "--porcelain", "--untracked-files=no"))


def test_two_deterministic_runs_log_the_same_metrics_at_every_step(tiny_mnist: Path, tmp_path: Path) -> None:
    overrides = [*TINY_RUN, "trainer.deterministic=true", "logger=csv", "seed=7"]
    metrics = []
    for name in ("first", "second"):
        result = train(*overrides, f"hydra.run.dir={tmp_path / name}", data_dir=tiny_mnist)
        assert result.returncode == 0, result.stderr
        metrics.append((tmp_path / name / "csv" / "metrics.csv").read_text())
    assert metrics[0] == metrics[1]
    rows = list(csv.DictReader(metrics[0].splitlines()))
    assert len([row for row in rows if row["train/loss_step"]]) == 10  # 5 steps an epoch, logged each step


def test_tensorboard_events_hold_every_metric_and_the_hparams(tiny_run: tuple[Path, str]) -> None:
    run_dir, _ = tiny_run
    events = EventAccumulator(str(run_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {
        "train/loss_step", "train/loss_epoch", "train/acc_epoch",
        "val/loss", "val/acc", "val/acc_best", "test/loss", "test/acc",
    }  # fmt: skip
    assert expected <= tags
    assert "lr-SGD" in tags
    assert len(events.Scalars("val/acc_best")) == 2  # one per epoch
    assert events.Scalars("val/acc_best")[-1].value == pytest.approx(
        max(e.value for e in events.Scalars("val/acc"))
    )

    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["model"].string_value == "lenet"
    assert hparams["optimizer"].string_value == "sgd"
    assert hparams["optimizer.lr"].number_value == pytest.approx(0.01)
    assert hparams["data.val_size"].number_value == 40


def test_prints_a_summary_with_the_results(tiny_run: tuple[Path, str]) -> None:
    run_dir, output = tiny_run
    assert "best val accuracy:" in output and "test accuracy:" in output
    assert f"checkpoint:        {run_dir}/checkpoints/epoch" in output
    assert f"run dir:           {run_dir}" in output
    assert "tensorboard --logdir" in output


def test_any_combination_of_groups_trains(tiny_mnist: Path, tmp_path: Path) -> None:
    overrides = ["model=mlp", "optimizer=sgd", "loss=mse", "scheduler=onecycle", "logger=tensorboard_csv"]
    result = train(*TINY_RUN, *overrides, f"hydra.run.dir={tmp_path}", data_dir=tiny_mnist)
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "csv" / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    assert [float(row["test/acc"]) for row in rows if row.get("test/acc")]
    assert "_target_: mnist_classifier.models.MLP" in (tmp_path / ".hydra" / "config.yaml").read_text()


def test_a_run_with_the_logger_removed_trains_and_writes_no_events(tiny_mnist: Path, tmp_path: Path) -> None:
    result = train(*TINY_RUN, "~logger", f"hydra.run.dir={tmp_path}", data_dir=tiny_mnist)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "test accuracy:" in output
    assert "tensorboard --logdir" not in output
    assert list((tmp_path / "checkpoints").glob("epoch*.ckpt"))
    assert not list(tmp_path.glob("events.out.tfevents.*"))


def test_runs_started_at_the_same_time_get_their_own_dirs(tiny_mnist: Path, tmp_path: Path) -> None:
    env = user_environment(tiny_mnist)
    command = [sys.executable, "train.py", "debug=fast", "data.val_size=40", f"paths.log_dir={tmp_path}"]
    runs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL) for _ in range(2)]
    assert [run.wait(timeout=600) for run in runs] == [0, 0]
    run_dirs = [path for path in tmp_path.glob("*/*") if path.is_dir()]
    assert len(run_dirs) == 2
    assert all((path / ".hydra" / "config.yaml").is_file() for path in run_dirs)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["optimizer.lr=-0.1", "data.val_size=40"],
            "error: optimizer.lr=-0.1 is invalid: the learning rate must be > 0",
        ),
        (["data.batch_size=0", "data.val_size=40"], "error: batch_size=0 is invalid: it must be >= 1"),
        ([f"data.val_size={TINY_TRAIN}"], f"error: val_size={TINY_TRAIN} is too large"),
        (
            ["data.image_size=12", "data.val_size=40"],
            "error: image_size=12 is too small for LeNet: it needs at least 16",
        ),
        (
            ["trainer.accelerator=gpu", "data.val_size=40"],
            "error: trainer.accelerator=gpu but this machine has no CUDA GPU",
        ),
    ],
)
def test_bad_values_fail_before_training_with_one_line(
    tiny_mnist: Path, tmp_path: Path, overrides: list[str], message: str
) -> None:
    result = train(*overrides, f"hydra.run.dir={tmp_path}", data_dir=tiny_mnist)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_missing_data_names_the_directory_and_the_files(tmp_path: Path) -> None:
    result = train("data.download=false", f"hydra.run.dir={tmp_path / 'run'}", data_dir=tmp_path / "nowhere")
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in line
    assert all(name in line for name in MNIST_FILES)


def test_unknown_option_lists_the_valid_ones(tiny_mnist: Path, tmp_path: Path) -> None:
    result = train("optimizer=adagrad", f"hydra.run.dir={tmp_path}", data_dir=tiny_mnist)
    assert result.returncode != 0
    assert "Could not find 'optimizer/adagrad'" in result.stderr
    for option in ("adam", "adamw", "nesterov", "rmsprop", "sgd"):
        assert f"\t{option}\n" in result.stderr


def test_an_unknown_key_is_refused_by_hydra_without_a_traceback(tiny_mnist: Path, tmp_path: Path) -> None:
    result = train("optimizer.lrr=3", f"hydra.run.dir={tmp_path}", data_dir=tiny_mnist)
    assert result.returncode != 0
    assert result.stderr.splitlines()[0] == "Could not override 'optimizer.lrr'."
    assert "Traceback" not in result.stderr


def test_a_corrupt_data_file_stops_the_run_with_one_line(tiny_mnist: Path, tmp_path: Path) -> None:
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        (raw / name).write_bytes((tiny_mnist / "MNIST" / "raw" / name).read_bytes())
    labels = raw / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-10])  # cut short, as by an interrupted copy
    result = train("data.val_size=40", f"hydra.run.dir={tmp_path / 'run'}", data_dir=tmp_path / "data")
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {labels} is truncated:")


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
    datamodule = MNISTDataModule(tiny_mnist, val_size=41, download=False)
    datamodule.setup("fit")
    images, labels = datamodule.val_set.tensors
    with torch.no_grad():
        single_process = (net.eval()(images).argmax(1) == labels).float().mean().item()

    events = EventAccumulator(str(tmp_path))
    events.Reload()
    (logged,) = events.Scalars("val/acc")
    assert logged.value == pytest.approx(single_process, abs=1e-6)


def real_mnist_dir() -> Path:
    return Path(os.environ.get("MNIST_DATA_DIR", ROOT / "data"))


@pytest.mark.skipif(
    not all((real_mnist_dir() / "MNIST" / "raw" / name).is_file() for name in MNIST_FILES),
    reason="the real MNIST is not in $MNIST_DATA_DIR (.ci/run sets it to ../shared/data)",
)
def test_one_epoch_of_lenet_on_the_real_mnist_reaches_97_percent(tmp_path: Path) -> None:
    result = train(
        "trainer.max_epochs=1", "logger=csv", f"hydra.run.dir={tmp_path}", data_dir=real_mnist_dir()
    )
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "csv" / "metrics.csv") as file:
        (test_acc,) = [float(row["test/acc"]) for row in csv.DictReader(file) if row.get("test/acc")]
    assert test_acc >= 0.97


def test_a_run_killed_mid_epoch_resumes_from_its_last_checkpoint_and_continues(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    # 40 epochs of 5 steps, last.ckpt every 3 steps: most checkpoints fall mid-epoch.
    overrides = [*TINY_RUN, "trainer.max_epochs=40", "callbacks.last_checkpoint.every_n_train_steps=3"]
    env = user_environment(tiny_mnist)
    last = tmp_path / "outputs"
    command = [sys.executable, str(ROOT / "train.py"), *overrides]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 300
        while not list(last.glob("*/*/checkpoints/last.ckpt")) and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.0)  # a little further, to be killed after some steps that no checkpoint holds
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it was killed"
    (run_dir,) = {path.parent.parent for path in last.glob("*/*/checkpoints/last.ckpt")}
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert 0 < saved["global_step"] < 200

    result = subprocess.run(
        [*command, "ckpt_path=last"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert f"resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in result.stdout + result.stderr
    final = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert (final["epoch"], final["global_step"]) == (39, 198)  # the last of every 3 steps, in epoch 40

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
        ("train/loss_step", set(range(200)), {checkpoint_step}),
        ("val/acc", set(range(4, 200, 5)), lost_val),
    ):
        steps = [event.step for event in events.Scalars(tag)]
        assert expected - may_lose <= set(steps) <= expected, tag
        assert all(step >= saved["global_step"] for step in steps if steps.count(step) > 1), tag


@pytest.mark.parametrize(
    ("stop", "message"),
    [
        (signal.SIGTERM, "error: stopped by SIGTERM; saved {last}, resume with ckpt_path=last"),
        (
            signal.SIGINT,
            "Detected KeyboardInterrupt, attempting graceful shutdown ...",
        ),  # Ctrl-C: Lightning's line
    ],
    ids=["sigterm", "ctrl-c"],
)
def test_a_stopped_run_saves_its_last_checkpoint_and_exits_non_zero(
    tiny_mnist: Path, tmp_path: Path, stop: signal.Signals, message: str
) -> None:
    env = user_environment(tiny_mnist)
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        *TINY_RUN,
        "trainer.max_epochs=100",
        f"hydra.run.dir={tmp_path}",
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = tmp_path / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    before = torch.load(last, weights_only=True)["global_step"]
    time.sleep(1.0)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1
    assert message.format(last=last) in stderr
    assert before < torch.load(last, weights_only=True)["global_step"] < 500  # saved when stopped


def test_a_bad_checkpoint_is_refused_with_one_line(
    tiny_run: tuple[Path, str], tiny_mnist: Path, tmp_path: Path
) -> None:
    run_dir, _ = tiny_run
    not_a_checkpoint = tmp_path / "notes.ckpt"
    not_a_checkpoint.write_text("not a checkpoint")
    cases = [
        (
            [f"ckpt_path={tmp_path / 'missing.ckpt'}"],
            f"error: ckpt_path={tmp_path / 'missing.ckpt'} does not exist",
        ),
        (
            [f"ckpt_path={not_a_checkpoint}"],
            f"error: ckpt_path={not_a_checkpoint} is not a checkpoint: torch.load",
        ),
        (
            ["model=mlp", f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"],
            f"error: ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'} holds a different model than this "
            "config's: it has no net.layers.1.bias",
        ),
        (
            ["ckpt_path=last", f"paths.log_dir={tmp_path / 'empty'}"],
            f"error: ckpt_path=last found no run under {tmp_path / 'empty'} with the same overrides",
        ),
    ]
    for overrides, message in cases:
        result = train(*TINY_RUN, *overrides, f"hydra.run.dir={tmp_path / 'run'}", data_dir=tiny_mnist)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), result.stderr
