"""Sweeps as a user runs them (`python train.py -m ...` on the tiny IDX data), and the sweep report."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import joblib
import optuna
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from hydra_plugins.mnist_classifier_sweepers import optuna_sweeper
from mnist_classifier.report import main as report_main

from .conftest import CONF_DIR, ROOT, run_script, user_environment

# A few batches per job: 80 training images in batches of 16, one or two epochs.
TINY_JOB = ["data.val_size=40", "data.batch_size=16", "trainer.max_epochs=2", "trainer.log_every_n_steps=1"]


def sweep_command(*overrides: str) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "-m", *TINY_JOB, *overrides]


def sweep(*overrides: str, data_dir: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """A sweep as a user starts it; outputs/ is under `cwd` unless the overrides say otherwise."""
    return run_script("train.py", "-m", *TINY_JOB, *overrides, data_dir=data_dir, cwd=cwd)


def report_rows(sweep_dir: Path) -> list[dict[str, str]]:
    with open(sweep_dir / "report.csv") as file:
        return list(csv.DictReader(file))


def hparams_sessions(sweep_dir: Path) -> dict[str, list]:
    """The HParams entries (session start infos) in every event file under the sweep dir, by run dir."""
    sessions: dict[str, list] = {}
    for path in sorted(sweep_dir.rglob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == "_hparams_/session_start_info":
                    info = HParamsPluginData.FromString(value.metadata.plugin_data.content).session_start_info
                    sessions.setdefault(path.parent.name, []).append(info.hparams)
    return sessions


def test_a_grid_runs_every_combination_each_in_a_run_dir_named_by_its_overrides(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    result = sweep(
        "model=lenet,mlp", "optimizer.lr=0.1,0.01", f"hydra.sweep.dir={tmp_path}", data_dir=tiny_mnist
    )
    assert result.returncode == 0, result.stderr
    expected = {
        f"{number}_data.batch_size=16,data.val_size=40,model={model},optimizer.lr={lr},"
        "trainer.log_every_n_steps=1,trainer.max_epochs=2"
        for number, (model, lr) in enumerate(
            [("lenet", "0.1"), ("lenet", "0.01"), ("mlp", "0.1"), ("mlp", "0.01")]
        )
    }
    assert {path.name for path in tmp_path.iterdir() if path.is_dir()} == expected

    # TensorBoard over the sweep dir: one run per job, each with one HParams entry holding its values.
    sessions = hparams_sessions(tmp_path)
    assert set(sessions) == expected
    for run_name, entries in sessions.items():
        (hparams,) = entries
        assert f"model={hparams['model'].string_value}," in run_name
        assert f"optimizer.lr={hparams['optimizer.lr'].number_value:g}," in run_name

    # The report: ranked by best val accuracy, printed and saved as CSV, Markdown and PNG.
    rows = report_rows(tmp_path)
    assert {row["run_dir"] for row in rows} == expected
    assert all(row["status"] == "finished" and row["epochs"] == "2" for row in rows)
    scores = [float(row["best_val_acc"]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    for row in rows:
        record = json.loads((tmp_path / row["run_dir"] / "job.json").read_text())
        assert float(row["best_val_acc"]) == record["metrics"]["val/acc_best"]
        assert float(row["test_acc"]) == record["metrics"]["test/acc"]
    assert (tmp_path / "report.md").read_text() in result.stdout
    assert (tmp_path / "report.png").stat().st_size > 0


def test_a_failing_job_does_not_stop_the_others_and_is_reported_with_its_error(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    result = sweep(
        "optimizer.lr=-1,0.1", "trainer.max_epochs=1", f"hydra.sweep.dir={tmp_path}", data_dir=tiny_mnist
    )
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: 1 of 2 jobs failed, the first 0_")
    assert "optimizer.lr=-1 is invalid" in last_line

    failed, finished = sorted(report_rows(tmp_path), key=lambda row: row["status"])
    assert (
        finished["status"] == "finished" and finished["optimizer.lr"] == "0.1" and finished["epochs"] == "1"
    )
    assert failed["status"] == "failed" and failed["rank"] == "2"
    assert failed["error"] == "optimizer.lr=-1 is invalid: the learning rate must be > 0"
    record = json.loads((tmp_path / failed["run_dir"] / "job.json").read_text())
    assert "Traceback" in record["traceback"]
    assert "| failed: optimizer.lr=-1 is invalid" in result.stdout


def test_parallel_jobs_split_the_cores_between_them(tiny_mnist: Path, tmp_path: Path) -> None:
    result = sweep(
        "hydra/launcher=parallel",
        "seed=1,2",
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={tmp_path}",
        data_dir=tiny_mnist,
    )
    assert result.returncode == 0, result.stderr
    assert "Joblib.Parallel(n_jobs=2" in result.stderr + result.stdout
    records = [json.loads(path.read_text()) for path in tmp_path.glob("*/job.json")]
    assert [record["status"] for record in records] == ["finished", "finished"]
    # Two jobs at once: each job's torch gets half the cores, not all of them.
    assert {record["torch_threads"] for record in records} == {max(1, joblib.cpu_count() // 2)}
    assert "## Across seeds" in (tmp_path / "report.md").read_text()


def test_submitit_runs_the_sweep_through_its_local_executor(tiny_mnist: Path, tmp_path: Path) -> None:
    result = sweep(
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
        "model=lenet,mlp",
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={tmp_path}",
        data_dir=tiny_mnist,
    )
    assert result.returncode == 0, result.stderr
    rows = report_rows(tmp_path)
    assert sorted(row["model"] for row in rows) == ["lenet", "mlp"]
    assert all(row["status"] == "finished" for row in rows)
    assert list((tmp_path / ".submitit").rglob("*_result.pkl"))  # the jobs ran as submitit jobs


def test_the_slurm_launcher_config_is_submitits_slurm_launcher() -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.cpus_per_task, launcher.gpus_per_node, launcher.tasks_per_node) == (4, 1, 1)
    assert "partition" in launcher and "array_parallelism" in launcher


def wait_for(condition, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_an_optuna_study_killed_mid_trial_continues_to_its_total_with_earlier_trials_kept(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    sweep_dir = tmp_path / "outputs" / "studies" / "lenet"
    overrides = ["hparams_search=optuna", "hydra.sweeper.n_trials=4"]
    storage = f"sqlite:///{sweep_dir}/optuna.db"

    # Started like a user would, and killed (SIGKILL) while its third trial runs.
    process = subprocess.Popen(
        sweep_command(*overrides),
        cwd=tmp_path,
        env=user_environment(tiny_mnist),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # Hydra writes overrides.yaml last of a job's .hydra files; then the job starts to train.
        wait_for(lambda: any(sweep_dir.glob("2_*/.hydra/overrides.yaml")) or process.poll() is not None)
        time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    before = optuna.load_study(study_name="lenet", storage=storage).trials
    assert all(trial.state in (TrialState.COMPLETE, TrialState.PRUNED) for trial in before[:2])
    assert before[2].state == TrialState.RUNNING and len(before) == 3

    result = sweep(*overrides, data_dir=tiny_mnist, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    after = optuna.load_study(study_name="lenet", storage=storage).trials
    for old, new in zip(before[:2], after[:2], strict=True):  # the finished trials, untouched
        assert (new.state, new.params, new.values) == (old.state, old.params, old.values)
    assert after[2].state == TrialState.FAIL  # the killed trial: failed, not counted
    assert [trial.number for trial in after] == [0, 1, 2, 3, 4]
    counted = [trial for trial in after if trial.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == 4

    # Each trial reported val/acc per epoch, and its run dir is named by its trial number.
    assert all(trial.intermediate_values for trial in counted)
    rows = {row["run_dir"].split("_", 1)[0]: row for row in report_rows(sweep_dir)}
    assert set(rows) == {"0", "1", "2", "3", "4"}
    assert rows["2"]["status"] == "unfinished"
    assert "callbacks.optuna_pruning.trial_number" not in rows["2"]  # the sweeper's, not a swept value
    for trial in counted:
        row = rows[str(trial.number)]
        assert row["status"] == {TrialState.COMPLETE: "finished", TrialState.PRUNED: "pruned"}[trial.state]
        assert f"optimizer={trial.params['optimizer']}," in row["run_dir"]
        if trial.state == TrialState.COMPLETE:
            assert float(row["best_val_acc"]) == pytest.approx(trial.value)
    assert (sweep_dir / "optuna_history.png").exists()


def test_the_pruning_callback_stops_a_trial_below_the_median_and_never_without_a_pruner(
    tmp_path: Path,
) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.add_trial(optuna.create_trial(value=0.9, intermediate_values={0: 0.9}))
    study.add_trial(optuna.create_trial(value=0.8, intermediate_values={0: 0.8}))

    def validate(callback, accuracy: float) -> None:
        trainer = SimpleNamespace(
            sanity_checking=False, callback_metrics={"val/acc": torch.tensor(accuracy, dtype=torch.float64)}
        )
        callback.on_validation_end(trainer, SimpleNamespace(current_epoch=0))

    median = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    hopeless = study.ask()
    with pytest.raises(optuna.TrialPruned):
        validate(
            optuna_sweeper.trial_pruning(None, str(tmp_path), "s", hopeless.number, "val/acc", median), 0.1
        )
    promising = study.ask()
    validate(
        optuna_sweeper.trial_pruning(None, str(tmp_path), "s", promising.number, "val/acc", median), 0.95
    )
    unpruned = study.ask()
    validate(optuna_sweeper.trial_pruning(None, str(tmp_path), "s", unpruned.number, "val/acc", None), 0.1)
    reported = optuna.load_study(study_name="s", storage=storage).trials
    assert [reported[trial.number].intermediate_values for trial in (hopeless, promising, unpruned)] == [
        {0: 0.1},
        {0: 0.95},
        {0: 0.1},
    ]


def test_hparams_search_refuses_to_run_outside_a_sweep(tiny_mnist: Path, tmp_path: Path) -> None:
    result = run_script(
        "train.py", "hparams_search=optuna", *TINY_JOB, f"hydra.run.dir={tmp_path}", data_dir=tiny_mnist
    )
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        "error: callbacks.optuna_pruning.trial_number is not set: hparams_search=optuna runs as a sweep, "
        "python train.py -m hparams_search=optuna"
    )


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optimizer=choice(sgd, adam)", CategoricalDistribution(["sgd", "adam"])),
        ("model.hidden_sizes=choice([60,42], [120,84])", CategoricalDistribution(["[60,42]", "[120,84]"])),
        ("data.batch_size=range(32, 97, 32)", CategoricalDistribution([32, 64, 96])),
        ("optimizer.lr=interval(0.001, 0.1)", FloatDistribution(0.001, 0.1)),
        ("optimizer.lr=tag(log, interval(0.0001, 0.1))", FloatDistribution(0.0001, 0.1, log=True)),
        ("trainer.max_epochs=tag(int, interval(1, 5))", IntDistribution(1, 5)),
    ],
)
def test_sweep_overrides_become_optuna_distributions(override: str, expected) -> None:
    (parsed,) = OverridesParser.create().parse_overrides([override])
    assert optuna_sweeper.distribution(parsed) == expected


def test_a_sweep_override_optuna_cannot_sample_is_refused_by_name() -> None:
    (parsed,) = OverridesParser.create().parse_overrides(["optimizer=glob(*)"])
    # Through the module: Hydra's plugin scan executes it again, which makes a new BadSweep class.
    with pytest.raises(optuna_sweeper.BadSweep, match=r"optimizer=glob\(\*\) is not supported by the optuna"):
        optuna_sweeper.distribution(parsed)


def write_job(sweep_dir: Path, name: str, overrides: list[str], record: dict | None) -> None:
    """A job's run dir as Hydra and the SweepReport callback leave it; no record: a killed job."""
    hydra_dir = sweep_dir / name / ".hydra"
    hydra_dir.mkdir(parents=True)
    all_overrides = [*overrides, "data.data_dir=/data"]  # a path: left out of names and the report
    (hydra_dir / "overrides.yaml").write_text("".join(f"- {line}\n" for line in all_overrides))
    (hydra_dir / "hydra.yaml").write_text(
        "hydra:\n  job:\n    config:\n      override_dirname:\n        exclude_keys: [data.data_dir]\n"
    )
    if record is not None:
        (sweep_dir / name / "job.json").write_text(json.dumps(record))


def test_the_report_ranks_jobs_and_gives_mean_and_std_across_seeds(tmp_path: Path, capsys) -> None:
    def finished(val: float, test: float) -> dict:
        return {
            "status": "finished",
            "metrics": {"val/acc_best": val, "test/acc": test, "epochs": 3},
            "wall_s": 2.0,
        }

    write_job(tmp_path, "0_lr=0.1,seed=1", ["lr=0.1", "seed=1"], finished(0.90, 0.89))
    write_job(tmp_path, "1_lr=0.1,seed=2", ["lr=0.1", "seed=2"], finished(0.94, 0.93))
    write_job(tmp_path, "2_lr=0.01,seed=1", ["lr=0.01", "seed=1"], finished(0.95, 0.96))
    write_job(tmp_path, "3_lr=0.01,seed=2", ["lr=0.01", "seed=2"], {"status": "failed", "error": "boom"})
    write_job(tmp_path, "4_lr=1,seed=1", ["lr=1", "seed=1"], None)  # killed: no record

    assert report_main([str(tmp_path)]) == 0
    rows = report_rows(tmp_path)
    assert [(row["run_dir"], row["status"]) for row in rows] == [
        ("2_lr=0.01,seed=1", "finished"),
        ("1_lr=0.1,seed=2", "finished"),
        ("0_lr=0.1,seed=1", "finished"),
        ("3_lr=0.01,seed=2", "failed"),
        ("4_lr=1,seed=1", "unfinished"),
    ]
    assert rows[3]["error"] == "boom"
    assert "data.data_dir" not in rows[0]
    markdown = (tmp_path / "report.md").read_text()
    # lr=0.1 over seeds 1 and 2: mean 0.92, sample std 0.0283; lr=0.01 has one finished seed only.
    assert "| lr=0.1 | 2 | 0.9200 ± 0.0283 | 0.9100 ± 0.0283 |" in markdown
    assert "| lr=0.01 |" not in markdown
    assert markdown in capsys.readouterr().out


def test_the_report_of_a_dir_without_jobs_is_a_one_line_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mnist_classifier.report", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {tmp_path} holds no sweep jobs (no */.hydra/overrides.yaml)"


def test_the_grid_sweeper_is_the_default_for_multirun() -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        grid = compose("train", return_hydra_config=True).hydra.sweeper
        study = compose("train", overrides=["hparams_search=optuna"], return_hydra_config=True).hydra.sweeper
    GlobalHydra.instance().clear()
    assert grid._target_.endswith("grid_sweeper.GridSweeper")
    assert study._target_.endswith("optuna_sweeper.OptunaSweeper") and study.objective == "val/acc_best"
