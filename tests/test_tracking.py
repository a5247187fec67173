"""The trackers: what a run sends to each of its loggers, read back through the tracker's own tools
(MLflow's client, REST API and web page; W&B's reader of its offline run files; TensorBoard's event
files; the CSV logger's files) and compared with TensorBoard's record of the same run, the run's own
files and its summary."""

import csv
import hashlib
import json
import re
import shutil
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import lightning as L
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from playwright.sync_api import sync_playwright
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from mnist_classifier.config import preflight
from mnist_classifier.errors import BadInput
from mnist_classifier.tracker_settings import tracking_experiment, tracking_run
from mnist_classifier.tracking import finish, log_results

from .conftest import TINY_RUN, TrainedRun, run_script, user_environment, wait_for
from .test_dashboards import events
from .test_serve import CHROMIUM_FLAGS

# MLflow's client, in this process, runs a query option that SQLAlchemy deprecates: a note to MLflow.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
SERVER_SECONDS = 120  # for `mlflow ui` to start its workers on a busy machine


def scalars(log_dir: Path, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in events(log_dir).Scalars(tag)]


def assert_same_curve(curve: list[tuple[int, float]], reference: list[tuple[int, float]]) -> None:
    """The same steps, and values equal to float32's precision (TensorBoard keeps float32)."""
    assert [step for step, _ in curve] == [step for step, _ in reference]
    assert [value for _, value in curve] == pytest.approx([value for _, value in reference], rel=1e-6)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def summary_value(output: str, name: str) -> float:
    """A value of the run's summary lines (`test accuracy:     0.5150`)."""
    return float(re.search(rf"{name}:\s+([0-9.]+)", output).group(1))


def test_hparams_hold_the_runs_settings_beside_its_final_metrics(tmp_path: Path) -> None:
    logger = L.pytorch.loggers.TensorBoardLogger(tmp_path, name="", version="", default_hp_metric=False)
    trainer = L.Trainer(logger=logger, accelerator="cpu")
    log_results(
        trainer, {"model": "lenet", "optimizer.lr": 0.01}, {"test/acc": 0.97, "val/loss": float("nan")}
    )
    logger.experiment.flush()
    accumulator = events(tmp_path)
    content = accumulator.PluginTagToContent("hparams")
    hparams = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info.hparams
    assert hparams["model"].string_value == "lenet" and hparams["optimizer.lr"].number_value == 0.01
    assert [event.value for event in accumulator.Scalars("hparams/test/acc")] == [pytest.approx(0.97)]
    assert accumulator.Tags()["scalars"] == ["hparams/test/acc"]  # NaN: not measured, not shown


def test_a_run_that_measured_nothing_still_shows_its_settings_in_hparams(tmp_path: Path) -> None:
    logger = L.pytorch.loggers.TensorBoardLogger(tmp_path, name="", version="", default_hp_metric=False)
    trainer = L.Trainer(logger=logger, accelerator="cpu")
    log_results(trainer, {"model": "mlp"}, {"test/acc": float("nan")})  # failed before it validated
    logger.experiment.flush()
    content = events(tmp_path).PluginTagToContent("hparams")
    hparams = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info.hparams
    assert hparams["model"].string_value == "mlp"


def test_any_logger_gets_the_settings_and_results_through_the_logger_api(tmp_path: Path) -> None:
    # The CSV logger stands for a tracker of the user's own: nothing in the package knows it.
    logger = L.pytorch.loggers.CSVLogger(tmp_path, name="", version="")
    trainer = L.Trainer(logger=logger, accelerator="cpu")
    log_results(trainer, {"model": "mlp", "optimizer.lr": 0.5}, {"test/acc": 0.25, "val/loss": float("nan")})
    finish(trainer, failed=False)  # as a run ends
    assert (tmp_path / "hparams.yaml").read_text().splitlines() == ["model: mlp", "optimizer.lr: 0.5"]
    with open(tmp_path / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    assert rows == [{"step": "0", "hparams/test/acc": "0.25"}]


def test_a_command_is_an_experiment_and_each_job_a_run_named_after_its_dir(compose_config) -> None:
    cfg = compose_config("logger=mlflow")  # a single run: its run dir is the experiment
    log_dir = cfg.paths.log_dir
    assert (
        tracking_experiment(f"{log_dir}/2026-12-06/10-00-00-000001", log_dir) == "2026-12-06/10-00-00-000001"
    )
    assert tracking_experiment("/elsewhere/run", log_dir) == "/elsewhere/run"
    assert tracking_run(f"{log_dir}/multiruns/2026-12-06/10-00-00/3_model=mlp") == "3_model=mlp"
    assert cfg.logger.mlflow.tracking_uri == f"sqlite:///{log_dir}/mlflow.db"
    assert cfg.logger.mlflow.artifact_location == f"{log_dir}/mlartifacts"


@pytest.mark.parametrize("tracker", ["mlflow", "wandb"])
def test_a_tracker_not_installed_is_refused_before_the_run_naming_its_extra(
    tracker: str, tiny_mnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, tracker, None)  # Python's mark of a module that cannot be imported
    with pytest.raises(BadInput) as refused:
        preflight([f"logger={tracker}", f"data.data_dir={tiny_mnist}"])
    assert (
        str(refused.value)
        == f"logger={tracker} is invalid: {tracker} is not installed; pip install -e '.[{tracker}]'"
    )


@dataclass
class TrackedSweep:
    """A grid of 4 jobs (LeNet and the MLP, seeds 1 and 2), 2 at a time in 2 processes that run 2
    jobs each, logging to TensorBoard, MLflow (one local store) and W&B at once."""

    outputs: Path
    output: str  # what the sweep printed: each job's summary, in job order

    @property
    def sweep_dir(self) -> Path:
        return self.outputs / "multiruns" / "grid"

    @property
    def job_dirs(self) -> list[Path]:
        return sorted(path for path in self.sweep_dir.iterdir() if path.is_dir())

    @property
    def run_dir(self) -> Path:  # the first job's, which the tests read as one run
        return self.job_dirs[0]

    @property
    def log(self) -> str:  # what the first job printed
        return (self.run_dir / "train.log").read_text()

    @property
    def store(self) -> str:
        return f"sqlite:///{self.outputs}/mlflow.db"

    @cached_property
    def mlflow_runs(self) -> dict[str, Run]:
        client = MlflowClient(self.store)
        (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
        assert experiment.name == "multiruns/grid"
        return {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}

    @property
    def mlflow_run(self) -> Run:
        return self.mlflow_runs[self.run_dir.name]

    @property
    def best(self) -> Path:
        return TrainedRun(self.run_dir, self.log).best

    @property
    def config(self) -> DictConfig:
        return TrainedRun(self.run_dir, self.log).config


@pytest.fixture(scope="module")
def tracked_run(tiny_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> TrackedSweep:
    """One sweep as a user starts it, its outputs/ in a temp dir."""
    outputs = tmp_path_factory.mktemp("tracked") / "outputs"
    done = run_script(
        "train.py", "-m", *TINY_RUN, "logger=[tensorboard,mlflow,wandb]", "model=lenet,mlp", "seed=1,2",
        "hydra/launcher=parallel", "hydra.launcher.n_jobs=2",
        f"paths.log_dir={outputs}", f"hydra.sweep.dir={outputs}/multiruns/grid",
        data_dir=tiny_mnist, cwd=outputs.parent, measured=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return TrackedSweep(outputs, done.stdout + done.stderr)


@pytest.mark.slow
def test_mlflow_holds_the_runs_settings_results_curves_checkpoint_and_config(
    tracked_run: TrackedSweep, tmp_path: Path
) -> None:
    run, client = tracked_run.mlflow_run, MlflowClient(tracked_run.store)
    params, composed = run.data.params, tracked_run.config
    assert params["model"] == "lenet" and float(params["optimizer.lr"]) == composed.optimizer.lr
    assert float(params["optimizer.momentum"]) == composed.optimizer.momentum
    assert run.info.status == "FINISHED"
    # The results: the summary's, and TensorBoard's record of the same values.
    test_acc = run.data.metrics["test/acc"]
    assert test_acc == pytest.approx(summary_value(tracked_run.log, "test accuracy"), abs=5e-5)
    assert test_acc == pytest.approx(scalars(tracked_run.run_dir, "test/acc")[-1][1], rel=1e-6)
    assert run.data.metrics["hparams/test/acc"] == test_acc
    # The curves, step by step, as TensorBoard has them.
    for tag in ("train/loss_step", "val/acc"):
        history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, tag)]
        assert_same_curve(history, scalars(tracked_run.run_dir, tag))
    # The tested checkpoint and the composed config, byte for byte.
    (checkpoint,) = client.list_artifacts(run.info.run_id, "checkpoints")
    copy = Path(client.download_artifacts(run.info.run_id, checkpoint.path, str(tmp_path)))
    assert copy.name == tracked_run.best.name and sha256(copy) == sha256(tracked_run.best)
    config_copy = Path(client.download_artifacts(run.info.run_id, "config/config.yaml", str(tmp_path)))
    assert config_copy.read_text() == (tracked_run.run_dir / ".hydra" / "config.yaml").read_text()
    assert f"mlflow ui --backend-store-uri {tracked_run.store}" in tracked_run.log


def wandb_inspect(run_files: Path, *args: str) -> str:
    """W&B's own reader of an offline run's transaction log (`wandb leet inspect`)."""
    wandb = Path(sys.executable).parent / "wandb"
    done = subprocess.run([str(wandb), "leet", "inspect", *args, str(run_files)], capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    return done.stdout


@pytest.mark.slow
def test_wandb_offline_run_files_hold_the_runs_settings_results_curves_and_checkpoint(
    tracked_run: TrackedSweep,
) -> None:
    (offline,) = (tracked_run.run_dir / "wandb").glob("offline-run-*")
    state = json.loads(wandb_inspect(offline, "--summary", "--json"))
    assert state["state"] == "finished" and state["name"] == tracked_run.run_dir.name
    assert state["project"] == "mnist_classifier"
    assert state["config"]["model"] == "lenet"
    assert state["config"]["optimizer.lr"] == tracked_run.config.optimizer.lr
    test_acc = state["summary"]["test/acc"]
    assert test_acc == pytest.approx(scalars(tracked_run.run_dir, "test/acc")[-1][1], rel=1e-6)
    assert state["summary"]["hparams/test/acc"] == test_acc
    records = [json.loads(line) for line in wandb_inspect(offline, "--json").splitlines()]
    rows = [record["history"]["item"] for record in records if record.get("type") == "history"]
    history = [
        (int(row["trainer/global_step"]), row["train/loss_step"]) for row in rows if "train/loss_step" in row
    ]
    assert_same_curve(history, scalars(tracked_run.run_dir, "train/loss_step"))
    saved = offline / "files" / "checkpoints" / tracked_run.best.name
    assert sha256(saved) == sha256(tracked_run.best)
    assert re.search(rf"wandb:\s+wandb sync {re.escape(str(offline))}\n", tracked_run.log)


@pytest.mark.slow
def test_a_grid_is_one_experiment_with_a_run_per_job_and_its_report_links_them(
    tracked_run: TrackedSweep,
) -> None:
    runs = tracked_run.mlflow_runs
    assert sorted(runs) == [path.name for path in tracked_run.job_dirs] and len(runs) == 4
    models = [runs[path.name].data.params["model"] for path in tracked_run.job_dirs]
    assert models == ["lenet", "lenet", "mlp", "mlp"]
    report = (tracked_run.sweep_dir / "report.md").read_text()
    for run in runs.values():
        link = f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
        (row,) = [line for line in report.splitlines() if link in line]
        assert f"| {run.info.run_name.split('_')[0]} |" in row
    # Each job is a W&B run of its own: a process's first job's run was finished, not taken over.
    names = [json.loads(wandb_inspect(job / "wandb" / "latest-run", "--summary", "--json"))["name"]
             for job in tracked_run.job_dirs]  # fmt: skip
    assert names == [path.name for path in tracked_run.job_dirs]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(SERVER_SECONDS + 180)
def test_mlflow_ui_shows_the_run_through_its_api_and_its_page(
    tracked_run: TrackedSweep, tmp_path: Path
) -> None:
    chromium = shutil.which("chromium")
    assert chromium is not None, "chromium is not installed: make system (or apt-get install -y chromium)"
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    with (tmp_path / "mlflow.log").open("w") as log:
        server = subprocess.Popen(
            [str(mlflow), "ui", "--backend-store-uri", tracked_run.store, "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, env=user_environment(tmp_path),
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(f"{base}/health"), server, what="mlflow ui", timeout=SERVER_SECONDS)
        run = tracked_run.mlflow_run
        with urllib.request.urlopen(
            f"{base}/api/2.0/mlflow/runs/get?run_id={run.info.run_id}", timeout=60
        ) as got:
            served = json.load(got)["run"]
        metrics = {metric["key"]: metric["value"] for metric in served["data"]["metrics"]}
        assert metrics["test/acc"] == run.data.metrics["test/acc"]

        link = json.loads((tracked_run.run_dir / "trackers.json").read_text())["mlflow"]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
            tab = browser.new_page()
            tab.goto(link.replace("http://127.0.0.1:5000", base))
            tab.wait_for_selector("text=test/acc", timeout=60_000)
            title, shown = tab.title(), tab.inner_text("body")
            browser.close()
        assert title == f"Run {run.info.run_id} - MLflow"
        assert re.search(rf"test/acc\s+{re.escape(str(metrics['test/acc']))}", shown)
    finally:
        server.terminate()
        server.wait(timeout=30)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False
