"""Sweeps as a user runs them (`python train.py -m ...` on the tiny IDX data): grids, Optuna studies
shared by several workers in PostgreSQL (a throwaway server, tests/postgres.py) and in a journal
file, SLURM's launcher and requeue, DDP inside a sweep, and the sweep report."""

import csv
import json
import signal
import subprocess
import sys
import threading
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from wsgiref.simple_server import WSGIRequestHandler, make_server

import joblib
import optuna
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from hydra_plugins.mnist_classifier_sweepers import optuna_sweeper
from mnist_classifier.errors import BadInput
from mnist_classifier.overrides import override_key
from mnist_classifier.report import main as report_main
from mnist_classifier.studies import open_storage, trial_pruning

from .conftest import CONF_DIR, ROOT, run_script, user_environment, wait_for
from .postgres import Server, postgres_server
from .run_hooks import FailJob

# One epoch of a few batches: 80 training images in batches of 16.
TINY_JOB = ["data.val_size=40", "data.batch_size=16", "trainer.max_epochs=1"]
# Workers notice a dead worker's trial within seconds: a heartbeat every second, and a trial without
# one for GRACE_S taken for a dead worker's. A live worker on a loaded machine must never go that
# long without one (its trial would be failed under it), so the grace is many intervals.
GRACE_S = 20
QUICK_HEARTBEAT = ["hydra.sweeper.heartbeat_interval=1", f"hydra.sweeper.grace_period={GRACE_S}"]
PRUNER = "callbacks.optuna_pruning.pruner"
# A pruner that stops every trial at its first report, after epoch 1 of 2: val/acc is never 1.5.
PRUNED_AT_FIRST_REPORT = [
    "trainer.max_epochs=2",
    "pruner=none",
    f"{PRUNER}._target_=optuna.pruners.ThresholdPruner",
    f"+{PRUNER}.lower=1.5",
    f"+{PRUNER}.n_warmup_steps=0",
]
# The test that is first to use a shared study builds it (pytest-timeout counts fixtures): workers
# started in rounds, one of them killed and its trial waited out; several times what it takes alone.
SHARED_STUDY_TIMEOUT_S = 600


def tiny_job(*extra: str) -> list[str]:
    """TINY_JOB with the `extra` overrides: one of the same key takes its place (a grid's swept keys
    keep their order, which numbers the jobs), the others follow."""
    given = {override_key(line): line for line in extra}
    job = [given.pop(override_key(line), line) for line in TINY_JOB]
    return [*job, *(line for line in extra if override_key(line) in given)]


def sweep(
    *overrides: str, data_dir: Path, cwd: Path = ROOT, measured: bool = False
) -> subprocess.CompletedProcess:
    """A sweep as a user starts it; outputs/ is under `cwd` unless the overrides say otherwise."""
    return run_script("train.py", "-m", *tiny_job(*overrides), data_dir=data_dir, cwd=cwd, measured=measured)


def start(args: list[str], data_dir: Path, log: Path, measured: bool = False, **env: str) -> subprocess.Popen:
    """train.py started as a user would, in its own process group, its output in `log`."""
    with log.open("w") as output:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), *args],
            cwd=log.parent,
            env=user_environment(data_dir, measured) | env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


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


def trials_of(storage: str, study_name: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name=study_name, storage=open_storage(storage)).trials


def retried_from(trial: FrozenTrial) -> int | None:
    with warnings.catch_warnings(category=optuna.exceptions.ExperimentalWarning, action="ignore"):
        return optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


def composed(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    GlobalHydra.instance().clear()
    return cfg


# -- grids and launchers ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_grid_runs_every_combination_in_run_dirs_named_by_their_overrides_past_failed_jobs(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    # Jobs with +fail=yes raise as their trainer sets up, as a job with bad data would (a config group
    # of the test's own, found through hydra.searchpath). In batches of 3 jobs: the second batch's job
    # is numbered by its place in the grid too, not in its batch.
    failing = tmp_path / "conf" / "fail"
    failing.mkdir(parents=True)
    (failing / "no.yaml").write_text("# @package _global_\n")
    (failing / "yes.yaml").write_text(
        "# @package _global_\ncallbacks:\n  fail_job:\n    _target_: tests.run_hooks.FailJob\n"
    )
    sweep_dir = tmp_path / "sweep"
    result = sweep(
        "+fail=no,yes",
        "model=lenet,mlp",
        "hydra.sweeper.max_batch_size=3",
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        f"hydra.sweep.dir={sweep_dir}",
        data_dir=tiny_mnist,
        measured=True,  # the only run of a sweep's failed jobs and their records
    )
    names = [
        f"{number}_+fail={fail},data.batch_size=16,data.val_size=40,model={model},trainer.max_epochs=1"
        for number, (fail, model) in enumerate(
            [("no", "lenet"), ("no", "mlp"), ("yes", "lenet"), ("yes", "mlp")]
        )
    ]
    assert {path.name for path in sweep_dir.iterdir() if path.is_dir()} == set(names), result.stderr

    # A failed job stops neither the others nor the report; the sweep then exits 1 with one line.
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: 2 of 4 jobs failed, the first {names[2]}: {FailJob.MESSAGE.format(2)}")
    )

    # TensorBoard over the sweep dir: one run per job, failed or not, its HParams entry holding its values.
    sessions = hparams_sessions(sweep_dir)
    assert set(sessions) == set(names)
    for run_name, (hparams,) in sessions.items():
        assert f"model={hparams['model'].string_value}," in run_name

    # The report: finished jobs ranked by the selection metric, then the failed ones with their error.
    rows = report_rows(sweep_dir)
    assert [row["status"] for row in rows] == ["finished", "finished", "failed", "failed"]
    scores = [float(row["val/acc_best"]) for row in rows[:2]]
    assert scores == sorted(scores, reverse=True)
    for row in rows[:2]:
        record = json.loads((sweep_dir / row["run_dir"] / "job.json").read_text())
        assert float(row["val/acc_best"]) == record["metrics"]["val/acc_best"]
        assert row["epochs"] == "1"
    assert [(row["run_dir"], row["error"]) for row in rows[2:]] == [
        (names[number], FailJob.MESSAGE.format(number)) for number in (2, 3)
    ]
    for row in rows[2:]:
        assert "Traceback" in json.loads((sweep_dir / row["run_dir"] / "job.json").read_text())["traceback"]
    assert (sweep_dir / "report.md").read_text() in result.stdout
    assert (sweep_dir / "report.png").stat().st_size > 0


@pytest.mark.slow
def test_parallel_jobs_split_the_cores_and_each_get_their_own_gpu(tiny_mnist: Path, tmp_path: Path) -> None:
    # Two GPUs as far as the sweep can tell (this machine has none: the jobs train on the CPU).
    process = start(
        ["-m", *TINY_JOB, "hydra/launcher=parallel", "seed=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        tiny_mnist,
        tmp_path / "sweep.log",
        measured=True,  # the only run of the launcher's GPU split
        CUDA_VISIBLE_DEVICES="0,1",
    )
    assert process.wait(timeout=600) == 0, (tmp_path / "sweep.log").read_text()
    assert "Joblib.Parallel(n_jobs=2" in (tmp_path / "sweep.log").read_text()
    records = {
        path.parent.name[0]: json.loads(path.read_text()) for path in (tmp_path / "sweep").glob("*/job.json")
    }
    assert {number: record["status"] for number, record in records.items()} == {
        "0": "finished",
        "1": "finished",
    }
    # Job k sees GPU k mod 2 only; each job's torch gets half the cores, not all of them.
    assert {number: record["cuda_visible_devices"] for number, record in records.items()} == {
        "0": "0",
        "1": "1",
    }
    assert {record["torch_threads"] for record in records.values()} == {max(1, joblib.cpu_count() // 2)}
    assert "## Across seeds" in (tmp_path / "sweep" / "report.md").read_text()


def test_trials_at_a_time_come_from_the_launcher_and_slurm_is_told_to_signal_lightning() -> None:
    study = ["hparams_search=optuna"]
    assert composed(*study).hydra.sweeper.n_jobs == 1
    assert composed(*study, "hydra/launcher=parallel").hydra.sweeper.n_jobs == 2
    slurm = composed(*study, "hydra/launcher=slurm", "hydra.launcher.array_parallelism=8").hydra
    assert slurm.launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert slurm.sweeper.n_jobs == 8
    # SLURM sends the signal on which Lightning saves a checkpoint and requeues the job.
    assert slurm.launcher.additional_parameters.signal == "USR1@120"
    assert composed().hydra.sweeper._target_.endswith("grid_sweeper.GridSweeper")  # -m without a study


def test_runs_and_sweeps_started_in_the_same_second_get_dirs_of_their_own() -> None:
    def dirs() -> tuple[str, str]:
        """A run's and a sweep's dir as Hydra names them when the command starts."""
        hydra = composed("paths.log_dir=/runs").hydra
        return hydra.run.dir, hydra.sweep.dir

    for _ in range(10):  # a pair that straddles a second's end, by the clock here, is named again
        before = datetime.now()
        first, second = dirs(), dirs()
        after = datetime.now()
        if before.replace(microsecond=0) == after.replace(microsecond=0):
            break
    else:
        pytest.fail("no two configs were composed within one second")
    second_named = before.strftime("%Y-%m-%d/%H-%M-%S")
    assert all(second_named in name for name in (*first, *second))  # named in the same second ...
    assert first[0] != second[0] and first[1] != second[1]  # ... and yet apart


# -- workers sharing a study --------------------------------------------------------------------


@dataclass
class Worker:
    sweep_dir: Path
    process: subprocess.Popen

    @property
    def log(self) -> str:
        return (self.sweep_dir.parent / f"{self.sweep_dir.name}.log").read_text()

    def run_dirs(self) -> list[Path]:
        return sorted(path.parent.parent for path in self.sweep_dir.glob("*/.hydra/overrides.yaml"))


@dataclass
class Round:
    n_trials: int
    workers: list[Worker]
    counted: int = 0  # the study's trials that count towards n_trials once the round's workers ended


@dataclass
class SharedStudy:
    storage: str
    name: str
    rounds: list[Round]
    victim_trial: int | None = None  # the trial of the worker killed mid-trial

    @property
    def trials(self) -> list[FrozenTrial]:
        return trials_of(self.storage, self.name)


def start_worker(study: SharedStudy, n_trials: int, sweep_dir: Path, data_dir: Path, *extra: str) -> Worker:
    """A worker of the shared study; the `extra` overrides replace those of TINY_JOB."""
    args = ["-m", "hparams_search=optuna", *QUICK_HEARTBEAT, f"hydra.sweep.dir={sweep_dir}"]
    # Quoted: a socket's URL holds `?`, `&` and `=`, which Hydra takes unquoted for syntax.
    args += [f"hydra.sweeper.storage='{study.storage}'", f"hydra.sweeper.study_name={study.name}"]
    args += [f"hydra.sweeper.n_trials={n_trials}", *tiny_job(*extra)]
    return Worker(sweep_dir, start(args, data_dir, sweep_dir.parent / f"{sweep_dir.name}.log"))


def counted(trials: list[FrozenTrial]) -> int:
    """The trials that count towards n_trials: finished ones, but for dead workers' retried trials."""
    retried = {retried_from(trial) for trial in trials}
    return sum(trial.state.is_finished() and trial.number not in retried for trial in trials)


def run_rounds(study: SharedStudy, base: Path, data_dir: Path, counts: tuple[int, int]) -> SharedStudy:
    """Workers started together, as many trials as workers: `counts[0]` of them, then `counts[1]`."""
    for number, workers in enumerate(counts):
        n_trials = (counted(study.trials) if number else 0) + workers
        started = [
            start_worker(study, n_trials, base / f"round{number}-{k}", data_dir) for k in range(workers)
        ]
        for worker in started:
            assert worker.process.wait(timeout=600) == 0, worker.log
        study.rounds.append(Round(n_trials, started, counted(study.trials)))
    return study


@pytest.fixture(scope="session")
def postgres() -> Iterator[Server]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def postgres_study(
    postgres: Server, tiny_mnist: Path, tmp_path_factory: pytest.TempPathFactory
) -> SharedStudy:
    """Two workers started together on a PostgreSQL study, then three, one of them killed mid-trial."""
    base = tmp_path_factory.mktemp("postgres_workers")
    study = SharedStudy(postgres.url(), "shared", [])
    run_rounds(study, base, tiny_mnist, (2,))
    n_trials = counted(study.trials) + 4
    # The worker to kill runs long trials, so that it is still in one when the others are in theirs.
    victim = start_worker(study, n_trials, base / "round1-victim", tiny_mnist, "trainer.max_epochs=500")
    wait_for(victim.run_dirs, victim.process, what="the victim's trial")
    others = [start_worker(study, n_trials, base / f"round1-{k}", tiny_mnist) for k in range(2)]
    # A live trial beside the victim's (which runs for minutes: it is killed while in it).
    wait_for(
        lambda: any(worker.run_dirs() for worker in others),
        victim.process,
        *(worker.process for worker in others),
        what="a trial of another worker",
    )
    (study.victim_trial,) = {int(path.name.split("_")[0]) for path in victim.run_dirs()}
    assert study.trials[study.victim_trial].state == TrialState.RUNNING
    # Its worker's thread beats for it while it runs, not only once as it starts.
    first_beat = postgres.heartbeat(study.name, study.victim_trial)
    assert first_beat is not None
    wait_for(lambda: postgres.heartbeat(study.name, study.victim_trial) > first_beat, victim.process,
             what="a heartbeat of the victim's trial after its first", timeout=60)  # fmt: skip
    victim.process.send_signal(signal.SIGKILL)
    for worker in others:
        assert worker.process.wait(timeout=600) == 0, worker.log
    victim.process.wait()
    study.rounds.append(Round(n_trials, [victim, *others], counted(study.trials)))
    return study


@pytest.fixture(scope="module")
def journal_study(tiny_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> SharedStudy:
    """Two workers started together on a journal file."""
    base = tmp_path_factory.mktemp("journal_workers")
    return run_rounds(SharedStudy(str(base / "journal.log"), "shared", []), base, tiny_mnist, (2,))


@pytest.mark.slow
@pytest.mark.timeout(SHARED_STUDY_TIMEOUT_S)
@pytest.mark.parametrize("shared", ["postgres_study", "journal_study"])
def test_workers_started_together_finish_n_trials_between_them(shared: str, request) -> None:
    study: SharedStudy = request.getfixturevalue(shared)
    for done in study.rounds:
        # N workers reach n_trials, not N times it; racing ones may overshoot by at most N - 1.
        assert done.n_trials <= done.counted <= done.n_trials + len(done.workers) - 1
    # No trial failed because another worker started: the only failure is the killed worker's.
    failed = [trial.number for trial in study.trials if trial.state == TrialState.FAIL]
    assert failed == ([study.victim_trial] if study.victim_trial is not None else [])


@pytest.mark.slow
@pytest.mark.timeout(SHARED_STUDY_TIMEOUT_S)
@pytest.mark.parametrize("shared", ["postgres_study", "journal_study"])
def test_each_trial_has_its_run_dir_and_tensorboard_run_and_the_reports_list_every_trial(
    shared: str, request
) -> None:
    study: SharedStudy = request.getfixturevalue(shared)
    workers = [worker for done in study.rounds for worker in done.workers]
    run_dirs = {int(path.name.split("_")[0]): path for worker in workers for path in worker.run_dirs()}
    for trial in study.trials:
        assert (
            trial.number in run_dirs
        )  # named by its trial number, in the sweep dir of the worker that ran it
        if trial.number != study.victim_trial:
            assert list(run_dirs[trial.number].glob("events.out.tfevents.*"))
            assert trial.user_attrs["job"]["run_dir"] == str(run_dirs[trial.number])
    # The report of each worker of the last round is the study's: every trial, whichever worker ran it.
    numbers = sorted(str(trial.number) for trial in study.trials)
    values = {str(trial.number): trial.value for trial in study.trials}
    for worker in study.rounds[-1].workers:
        if worker.process.returncode == 0:
            rows = report_rows(worker.sweep_dir)
            assert sorted(row["run_dir"].split("_")[0] for row in rows) == numbers
            for row in rows:
                if row["status"] == "finished":
                    assert float(row["val/acc_best"]) == pytest.approx(values[row["run_dir"].split("_")[0]])
    # Made again later from a first-round worker's sweep dir: the study as it is now.
    first_worker = study.rounds[0].workers[0].sweep_dir
    assert report_main([str(first_worker)]) == 0
    assert sorted(row["run_dir"].split("_")[0] for row in report_rows(first_worker)) == numbers


@pytest.mark.slow
@pytest.mark.timeout(SHARED_STUDY_TIMEOUT_S)
def test_a_killed_workers_trial_is_found_by_its_heartbeat_and_run_again_by_another(
    postgres_study: SharedStudy,
) -> None:
    trials = postgres_study.trials
    killed = trials[postgres_study.victim_trial]
    assert killed.state == TrialState.FAIL and "job" not in killed.user_attrs
    (retry,) = [trial for trial in trials if retried_from(trial) == killed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    # Run by a worker that lived, in its sweep dir; the other workers' trials all finished.
    _, *others = postgres_study.rounds[-1].workers
    assert any(path.name.startswith(f"{retry.number}_") for worker in others for path in worker.run_dirs())
    assert all(trial.state == TrialState.COMPLETE for trial in trials if trial.number != killed.number)
    rows = {row["run_dir"].split("_")[0]: row for row in report_rows(others[0].sweep_dir)}
    assert rows[str(killed.number)]["status"] == "failed"
    assert (
        rows[str(killed.number)]["error"]
        == f"its worker stopped sending heartbeats; retried as trial {retry.number}"
    )


@pytest.mark.slow
@pytest.mark.timeout(SHARED_STUDY_TIMEOUT_S)
@pytest.mark.parametrize("shared", ["postgres_study", "journal_study"])
def test_workers_of_a_study_draw_their_own_values(shared: str, request) -> None:
    study: SharedStudy = request.getfixturevalue(shared)
    # Each worker's sampler is seeded by its first trial's number: workers started together, with
    # the same configured seed, would otherwise draw the same values, trial for trial. Only a
    # retry of a dead worker's trial repeats values: that trial's own.
    drawn = [
        json.dumps(trial.params, sort_keys=True) for trial in study.trials if retried_from(trial) is None
    ]
    assert len(drawn) == len(study.trials) - (study.victim_trial is not None)
    assert len(set(drawn)) == len(drawn), drawn
    # Each worker of the first round draws with the configured sampler, seeded with the configured
    # seed plus its first trial's number: its trials hold that sampler's draws, in turn. Which worker
    # ran which trials, and how many, is for its run dirs to say: the faster one may run them all.
    # (The values are drawn in the order of the search space; TINY_JOB fixes the batch size.)
    cfg = composed("hparams_search=optuna")
    order = [
        name for name in cfg.hydra.sweeper.params if name not in {override_key(line) for line in TINY_JOB}
    ]
    trials = study.trials
    replayed_trials = []
    for worker in study.rounds[0].workers:
        numbers = sorted(int(path.name.split("_")[0]) for path in worker.run_dirs())
        sampler = optuna.samplers.TPESampler(seed=cfg.seed + min(numbers, default=0), constant_liar=True)
        replay = optuna.create_study(sampler=sampler)
        for number in numbers:
            assert set(trials[number].distributions) == set(order)  # all of the search space, no more
            replayed = replay.ask()
            optuna_sweeper.suggest(replayed, {name: trials[number].distributions[name] for name in order})
            assert replayed.params == trials[number].params, number
        replayed_trials += numbers
    assert sorted(replayed_trials) == list(range(study.rounds[0].counted))


def test_a_workers_sampler_is_the_configured_one_with_its_seed_offset_by_its_first_trial() -> None:
    sweeper = instantiate(composed("hparams_search=optuna", "seed=7").hydra.sweeper)

    def draws(sampler: optuna.samplers.BaseSampler) -> list[float]:
        study = optuna.create_study(sampler=sampler)
        return [study.ask().suggest_float("lr", 1e-4, 0.1, log=True) for _ in range(3)]

    assert isinstance(sweeper._sampler(3), optuna.samplers.TPESampler)
    assert draws(sweeper._sampler(3)) == draws(optuna.samplers.TPESampler(seed=10, constant_liar=True))
    assert draws(sweeper._sampler(3)) == draws(sweeper._sampler(3))
    assert draws(sweeper._sampler(3)) != draws(sweeper._sampler(4))


class QuietRequests(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # no line per request on stderr
        pass


@pytest.mark.slow
@pytest.mark.timeout(SHARED_STUDY_TIMEOUT_S)
def test_optuna_dashboard_shows_the_shared_study(postgres_study: SharedStudy) -> None:
    import optuna_dashboard

    # The dashboard's app (what the optuna-dashboard command serves) on a port the system picks as
    # it binds: no other process can take it between the choice and the bind.
    app = optuna_dashboard.wsgi(postgres_study.storage)
    server = make_server("127.0.0.1", 0, app, handler_class=QuietRequests)
    serving = threading.Thread(target=server.serve_forever, name="dashboard", daemon=True)
    serving.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}/api/studies"
        with urllib.request.urlopen(base, timeout=60) as response:
            (shown,) = json.load(response)["study_summaries"]
        assert shown["study_name"] == postgres_study.name
        with urllib.request.urlopen(f"{base}/{shown['study_id']}", timeout=60) as response:
            trials = json.load(response)["trials"]
        assert sorted(trial["number"] for trial in trials) == [
            trial.number for trial in postgres_study.trials
        ]
    finally:
        server.shutdown()
        serving.join()
        server.server_close()


@pytest.mark.slow
def test_workers_connecting_to_a_new_database_at_once_all_get_the_study(postgres: Server) -> None:
    # Each makes Optuna's tables in the empty database; all but one find them made meanwhile.
    storage = postgres.new_database("race")
    code = f"from mnist_classifier.studies import open_storage; open_storage({storage!r}, 1, None, 1)"
    workers = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(4)
    ]
    # communicate: each worker's stderr read to its end while it runs, so that none blocks writing it
    ended = [(worker.communicate(timeout=120)[1], worker.returncode) for worker in workers]
    assert ended == [("", 0)] * 4


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["unreachable", "wrong password", "journal in a missing folder"])
def test_a_storage_that_cannot_be_used_is_refused_in_one_line(
    case: str, postgres: Server, tmp_path: Path
) -> None:
    storage, reason = {
        # A socket dir where no server listens.
        "unreachable": (postgres.url(socket_dir=tmp_path), "No such file or directory"),
        "wrong password": (
            postgres.url(password="wrong"),
            'password authentication failed for user "sweeper"',
        ),
        "journal in a missing folder": (
            str(tmp_path / "missing" / "journal.log"),
            f"no folder {tmp_path}/missing",
        ),
    }[case]
    with pytest.raises(BadInput) as refused:
        open_storage(storage)
    (line,) = str(refused.value).splitlines()
    assert line.startswith("hydra.sweeper.storage=") and " is invalid: " in line and reason in line
    assert "sweeper-secret" not in line  # a URL's password is not shown


@pytest.mark.slow
def test_a_sweep_refuses_a_study_of_the_other_direction_in_one_line_before_any_trial(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    optuna.create_study(study_name="lenet", storage=storage, direction="minimize")
    result = sweep("hparams_search=optuna", f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path}",
                   data_dir=tiny_mnist)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: selection.mode=max is invalid: study lenet in {storage} is to minimize; give "
        "selection.mode=min, or another hydra.sweeper.study_name"
    ]
    assert not list(tmp_path.glob("*/.hydra"))  # no job started


@pytest.mark.slow
def test_a_trial_the_pruner_stops_is_pruned_in_the_study_in_its_record_and_in_the_report(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    result = sweep(
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=1",
        *PRUNED_AT_FIRST_REPORT,
        f"hydra.sweep.dir={tmp_path}",
        data_dir=tiny_mnist,
    )
    assert result.returncode == 0, result.stderr  # a pruned trial is no failure of the sweep
    (trial,) = trials_of(f"sqlite:///{tmp_path}/optuna.db", "lenet")
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]  # reported after the first epoch, then stopped
    (run_dir,) = (path.parent for path in tmp_path.glob("*/job.json"))
    assert run_dir.name.startswith(f"{trial.number}_")
    assert "epoch 1/2:" in (run_dir / "train.log").read_text()
    assert "epoch 2/2:" not in (run_dir / "train.log").read_text()
    record = json.loads((run_dir / "job.json").read_text())
    assert (record["status"], record["error"]) == ("pruned", "Trial was pruned at epoch 0.")
    assert "traceback" not in record  # not a failure
    assert trial.user_attrs["job"]["status"] == "pruned"
    (row,) = report_rows(tmp_path)
    assert (row["run_dir"], row["status"], row["val/acc_best"]) == (run_dir.name, "pruned", "")
    assert "1 jobs: 0 finished, 1 pruned, 0 failed" in (tmp_path / "report.md").read_text()


@pytest.mark.slow
def test_a_trial_that_raises_is_failed_in_the_study_its_record_and_the_report_and_the_study_goes_on(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    # Trial 0 raises as its trainer sets up (tests/run_hooks.py); the study then runs trial 1.
    failing = "{_target_:tests.run_hooks.FailJob,jobs:[0]}"
    result = sweep(
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        "pruner=none",
        f"+callbacks.fail_job={failing}",
        f"hydra.sweep.dir={tmp_path}",
        data_dir=tiny_mnist,
    )
    error = FailJob.MESSAGE.format(0)
    trials = trials_of(f"sqlite:///{tmp_path}/optuna.db", "lenet")
    assert [trial.state for trial in trials] == [TrialState.FAIL, TrialState.COMPLETE], result.stderr
    run_dirs = {int(path.parent.name.split("_")[0]): path.parent for path in tmp_path.glob("*/job.json")}
    failed = json.loads((run_dirs[0] / "job.json").read_text())
    assert (failed["status"], failed["error"]) == ("failed", error)
    assert f"RuntimeError: {error}" in failed["traceback"]
    # The storage keeps the failed trial's record, with its error (its traceback stays in the run dir).
    assert trials[0].user_attrs["job"] == {k: v for k, v in failed.items() if k != "traceback"} | {
        "run_dir": str(run_dirs[0])
    }
    finished = json.loads((run_dirs[1] / "job.json").read_text())
    assert trials[1].value == finished["metrics"]["val/acc_best"]
    rows = report_rows(tmp_path)
    assert [(row["run_dir"], row["status"], row["error"]) for row in rows] == [
        (run_dirs[1].name, "finished", ""),
        (run_dirs[0].name, "failed", error),
    ]
    # The sweep ends with the failure in one line, after the report.
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: 1 of 2 jobs failed, the first {run_dirs[0].name}: {error}"), last


# -- DDP and SLURM requeue ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_ddp_trial_runs_its_ranks_in_its_own_run_dir_without_a_sweep_per_rank(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
    result = sweep(
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=1",
        *ddp,
        f"paths.log_dir={tmp_path}",
        data_dir=tiny_mnist,
        measured=True,  # the only run of a relaunched rank's job
    )
    assert result.returncode == 0, result.stderr
    # One sweep and one trial: rank 1 ran rank 0's job, not a sweep of its own.
    assert [path.relative_to(tmp_path).as_posix() for path in tmp_path.glob("*/*")] == ["studies/lenet"]
    sweep_dir = tmp_path / "studies" / "lenet"
    (trial,) = trials_of(f"sqlite:///{sweep_dir}/optuna.db", "lenet")
    assert trial.state == TrialState.COMPLETE
    (run_dir,) = (path.parent for path in sweep_dir.glob("*/job.json"))
    assert run_dir.name.startswith("0_")
    assert (result.stdout + result.stderr).count("test accuracy:") == 1  # one summary, from rank 0
    # 80 training images over 2 processes: 40 each, 3 batches of 16, so 3 optimizer steps.
    assert global_step(run_dir / "checkpoints" / "last.ckpt") == 3


@pytest.mark.slow
def test_a_ddp_trial_the_pruner_stops_ends_on_both_ranks_and_is_pruned(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    # Gloo on the CPU: two ranks. Rank 0 decides, and both ranks must stop at the first report, or
    # the other waits for it forever.
    result = sweep(
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=1",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        *PRUNED_AT_FIRST_REPORT,
        f"paths.log_dir={tmp_path}",
        data_dir=tiny_mnist,
    )
    assert result.returncode == 0, result.stderr  # a pruned trial is no failure of the sweep
    sweep_dir = tmp_path / "studies" / "lenet"
    (trial,) = trials_of(f"sqlite:///{sweep_dir}/optuna.db", "lenet")
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]
    (run_dir,) = (path.parent for path in sweep_dir.glob("*/job.json"))
    record = json.loads((run_dir / "job.json").read_text())
    assert record["status"] == "pruned" and trial.user_attrs["job"]["status"] == "pruned"
    assert "epoch 1/2:" in (run_dir / "train.log").read_text()
    assert "epoch 2/2:" not in (run_dir / "train.log").read_text()
    # One epoch only: 80 training images over 2 processes, 3 batches of 16 each; no test stage.
    assert global_step(run_dir / "checkpoints" / "last.ckpt") == 3
    assert "test accuracy:" not in result.stdout + result.stderr


def global_step(checkpoint: Path) -> int:
    return torch.load(checkpoint, weights_only=True)["global_step"]


def logged_steps(run_dir: Path, tag: str) -> list[list[int]]:
    """The steps at which each process that ran in the run dir logged `tag`, process by process in
    the order they started. A process may write several event files, which TensorBoard names
    events.out.tfevents.TIME.HOST.PID.N, N counting that process's files."""

    def named(path: Path) -> tuple[int, str, int]:
        fields = path.name.split(".")
        return int(fields[3]), fields[-2], int(fields[-1])

    by_process: dict[str, list[int]] = {}  # in the order the processes' first files were written
    for path in sorted(run_dir.glob("events.out.tfevents.*"), key=named):
        _, pid, _ = named(path)
        for event in EventFileLoader(str(path)).Load():
            by_process.setdefault(pid, []).extend(
                event.step for value in event.summary.value if value.tag == tag
            )
    return list(by_process.values())


def pausing_at(folder: Path, *steps: int) -> str:
    """The override adding a callback that pauses the run at these optimizer steps (tests/run_hooks.py)."""
    listed = ",".join(map(str, steps))
    return f"+callbacks.pause_at={{_target_:tests.run_hooks.PauseAtSteps,folder:'{folder}',steps:[{listed}]}}"


@pytest.mark.slow
@pytest.mark.timeout(300)  # three train.py runs of 500 steps, one after another
def test_a_slurm_job_requeued_twice_continues_from_its_checkpoints_with_its_step_count_and_curves(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    # SLURM as Lightning sees it in a job, and an scontrol that records each requeue it is asked for.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    requeues = tmp_path / "requeues"
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {requeues}\n')
    scontrol.chmod(0o755)
    slurm = {
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "train",
        "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1",
    }
    slurm |= {"SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost"}
    slurm["PATH"] = f"{bin_dir}:{user_environment(tiny_mnist)['PATH']}"
    run_dir = tmp_path / "run"
    # 5 epochs of 100 steps (100 images in batches of 1), the logs every 50 steps. Lightning's handler
    # of the requeue signal saves a checkpoint and flushes the loggers, which breaks a save or a log
    # write of the run's own that it interrupts; and a run resumed from a checkpoint saved at an
    # epoch's end, stopped and resumed again, trains a step too many. So each run pauses itself in
    # the middle of an epoch (tests/run_hooks.py), and is signalled while it waits there.
    total, log_every = 5 * 100, 50
    stops = (130, 370)  # where the first run and the requeued one are signalled
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    args = ["data.val_size=20", "data.batch_size=1", "trainer.max_epochs=5", f"hydra.run.dir={run_dir}"]
    args += [f"trainer.log_every_n_steps={log_every}", "trainer.accelerator=cpu", pausing_at(hooks, *stops)]
    jobs: list[subprocess.Popen] = []

    def started(log: Path, **env: str) -> subprocess.Popen:
        jobs.append(start(args, tiny_mnist, log, **slurm, **env))
        return jobs[-1]

    def requeued(job: subprocess.Popen, log: Path, step: int, count: int) -> None:
        """What SLURM does signal_delay_s before a job's end, once the run has paused at `step`: the
        signal on which Lightning saves an hpc checkpoint and asks scontrol to requeue the job; then
        the job stopped."""
        wait_for((hooks / f"paused-{step}").exists, job, what=f"the run to pause at step {step}")
        job.send_signal(signal.SIGUSR1)
        wait_for(lambda: requeues.exists() and len(requeues.read_text().splitlines()) == count,
                 job, what=f"requeue {count}", timeout=120)  # fmt: skip
        job.send_signal(signal.SIGTERM)
        (hooks / f"go-{step}").touch()  # the signals were sent: the run goes on, and stops
        assert job.wait(timeout=600) == 1, log.read_text()
        assert "stopped by SIGTERM" in log.read_text()

    resumed_at = []  # the step each requeued run resumed from
    try:
        job = started(tmp_path / "run0.log")
        requeued(job, tmp_path / "run0.log", stops[0], 1)
        for restart in (1, 2):
            saved = {
                path: global_step(path)
                for path in [*run_dir.glob("hpc_ckpt_*.ckpt"), *run_dir.glob("checkpoints/last.ckpt")]
            }
            log = tmp_path / f"run{restart}.log"
            job = started(log, SLURM_RESTART_COUNT=str(restart))
            if restart == 1:  # requeued again, once it has trained on past its checkpoint
                requeued(job, log, stops[1], 2)
            else:
                assert job.wait(timeout=600) == 0, log.read_text()
            output = log.read_text()
            assert "resuming from " in output, output  # not a new start
            resumed = Path(output.split("resuming from ", 1)[1].split(";")[0])
            assert resumed in saved, output
            resumed_at.append(saved[resumed])
    finally:
        for job in jobs:
            if job.poll() is None:  # a failed check above: not left running
                job.kill()
                job.wait()

    assert requeues.read_text().splitlines() == ["requeue 4242"] * 2
    # Each requeued run resumed where the signal stopped the run before it, and trained on to the end.
    hpc = [global_step(run_dir / f"hpc_ckpt_{number}.ckpt") for number in (1, 2)]
    assert hpc == resumed_at == list(stops)
    assert global_step(run_dir / "checkpoints" / "last.ckpt") == total  # as if never stopped
    # The curves go on in the same TensorBoard run: each requeued run logs the steps an unstopped
    # run logs, from the step it resumed at on, and the three runs together log each of them once.
    logged = list(range(log_every - 1, total, log_every))
    first, *requeued_runs = logged_steps(run_dir, "train/loss_step")
    assert first == logged[: len(first)]
    for steps, resumed_step in zip(requeued_runs, resumed_at, strict=True):
        assert steps and steps == [step for step in logged if step >= resumed_step][: len(steps)]
    assert sorted(step for steps in [first, *requeued_runs] for step in steps) == logged


# -- the study's parts --------------------------------------------------------------------------


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
        validate(trial_pruning(None, str(tmp_path), "s", hopeless.number, "val/acc", median), 0.1)
    promising = study.ask()
    validate(trial_pruning(None, str(tmp_path), "s", promising.number, "val/acc", median), 0.95)
    unpruned = study.ask()
    validate(trial_pruning(None, str(tmp_path), "s", unpruned.number, "val/acc", None), 0.1)
    reported = optuna.load_study(study_name="s", storage=storage).trials
    assert [reported[trial.number].intermediate_values for trial in (hopeless, promising, unpruned)] == [
        {0: 0.1},
        {0: 0.95},
        {0: 0.1},
    ]


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
    with pytest.raises(
        BadInput, match=r"^optimizer=glob\(\*\) is invalid: the optuna sweeper samples choice"
    ):
        optuna_sweeper.distribution(parsed)


# -- the report ---------------------------------------------------------------------------------


def write_job(sweep_dir: Path, name: str, overrides: list[str], record: dict | None) -> None:
    """A job's run dir as Hydra and the JobRecords callback leave it; no record: a killed job."""
    hydra_dir = sweep_dir / name / ".hydra"
    hydra_dir.mkdir(parents=True)
    all_overrides = [*overrides, "data.data_dir=/data"]  # a path: left out of names and the report
    (hydra_dir / "overrides.yaml").write_text("".join(f"- {line}\n" for line in all_overrides))
    (hydra_dir / "hydra.yaml").write_text(
        "hydra:\n  job:\n    config:\n      override_dirname:\n        exclude_keys: [data.data_dir]\n"
    )
    if record is not None:
        (sweep_dir / name / "job.json").write_text(json.dumps(record))


def finished(val: float, test: float) -> dict:
    return {
        "status": "finished",
        "metrics": {"val/acc_best": val, "test/acc": test, "epochs": 3},
        "wall_s": 2.0,
    }


def test_the_report_of_a_sweep_that_varied_nothing_is_a_whole_table(tmp_path: Path) -> None:
    write_job(tmp_path, "0_seed=1", ["seed=1"], finished(0.90, 0.89))
    assert report_main([str(tmp_path)]) == 0
    table = [line for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("|")]
    assert table[0] == "| rank | job | best val/acc | test acc | epochs | wall s | status |"
    assert {line.count("|") for line in table} == {8}  # the header, the rule and the row alike


def test_the_report_ranks_jobs_and_gives_mean_and_std_across_seeds(tmp_path: Path, capsys) -> None:
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


def test_the_report_ranks_by_the_sweeps_selection_metric_and_its_mode(tmp_path: Path) -> None:
    (tmp_path / "multirun.yaml").write_text(
        "selection: {monitor: val/loss, mode: min}\n"
        "hydra: {sweeper: {_target_: hydra_plugins.mnist_classifier_sweepers.grid_sweeper.GridSweeper}}\n"
    )
    for number, loss in enumerate([0.30, 0.10, 0.20]):
        record = finished(0.9, 0.9) | {"metrics": {"val/loss_best": loss, "val/acc_best": 1 - loss}}
        write_job(tmp_path, f"{number}_lr={number}", [f"lr={number}"], record)
    assert report_main([str(tmp_path)]) == 0
    rows = report_rows(tmp_path)
    assert [row["run_dir"] for row in rows] == ["1_lr=1", "2_lr=2", "0_lr=0"]  # the lowest loss first
    assert [float(row["val/loss_best"]) for row in rows] == [0.10, 0.20, 0.30]
    assert "Best: job 1, val/loss_best 0.1000" in (tmp_path / "report.md").read_text()


def test_the_report_of_a_study_is_built_from_its_storage(tmp_path: Path, capsys) -> None:
    storage = str(tmp_path / "journal.log")
    study = optuna.create_study(study_name="s", storage=open_storage(storage), direction="maximize")
    space = {"lr": FloatDistribution(0.001, 0.1)}
    for number, (lr, val) in enumerate([(0.01, 0.9), (0.05, 0.95)]):
        record = finished(val, val - 0.01) | {
            "run_dir": f"/elsewhere/{number}_lr={lr}",
            "overrides": {"lr": str(lr)},
        }
        study.add_trial(
            optuna.create_trial(params={"lr": lr}, distributions=space, value=val, user_attrs={"job": record})
        )
    study.ask({"lr": FloatDistribution(0.001, 0.1)})  # running in some worker: no record yet

    assert report_main(["--storage", storage, "--study", "s", "--out", str(tmp_path / "report")]) == 0
    rows = report_rows(tmp_path / "report")
    assert [(row["run_dir"], row["status"]) for row in rows] == [
        ("1_lr=0.05", "finished"),
        ("0_lr=0.01", "finished"),
        ("2", "unfinished"),
    ]
    assert rows[2]["error"] == "running"
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert markdown.startswith(f"# Sweep report: study s in {storage}")
    assert "Best: job 1, val/acc_best 0.9500, run dir `/elsewhere/1_lr=0.05`" in markdown
    assert (tmp_path / "report" / "optuna_history.png").exists()
    assert markdown in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{tmp}"], "{tmp} is invalid: it holds no sweep (no multirun.yaml, no */.hydra/overrides.yaml)"),
        (
            ["--storage", "{tmp}/journal.log", "--study", "nope"],
            "--study nope is invalid: {tmp}/journal.log holds no study",
        ),
    ],
)
def test_a_report_of_nothing_is_a_one_line_error(
    argv: list[str], message: str, tmp_path: Path, capsys
) -> None:
    with pytest.raises(SystemExit) as exit_status:
        report_main([arg.format(tmp=tmp_path) for arg in argv])
    assert exit_status.value.code == 2
    assert capsys.readouterr().err == f"error: {message.format(tmp=tmp_path)}\n"
