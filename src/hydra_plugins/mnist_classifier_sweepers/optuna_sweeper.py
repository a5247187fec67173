"""An Optuna study as a Hydra sweeper: `python train.py -m hparams_search=optuna`.

Each sweeper process is a worker of the study: it asks the study for trials, runs them as Hydra
jobs through the configured launcher (`n_jobs` at a time), and tells the study each job's result.
Any number of workers, started at any time on any machine, can share one study in one storage
(`storage`: SQLite in the sweep dir by default, PostgreSQL, or a journal file). `n_trials` is the
study's total over all of them: a worker asks only for trials that are neither finished nor
running elsewhere, so workers that ask at the same moment run at most one batch each past it.

On a database, a worker records a heartbeat for each trial it runs, as Optuna's `optimize` does.
A worker that dies leaves trials whose heartbeat stops; the next worker that looks fails them and
Optuna's RetryHeartbeatStaleTrialCallback queues each again (up to `max_retry` times), so a worker
whose share is done waits while other trials run. Nothing else fails a running trial. Each job
reports the selection metric to its trial every epoch (mnist_classifier.studies.trial_pruning),
so that the study's pruner can stop it.

Our own, on Optuna's public API: the `hydra-optuna-sweeper` package on PyPI holds Optuna to an old
release.
Optuna is imported when a sweep starts, not when Hydra loads its plugins for every command.
"""

import json
import logging
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.utils import JobReturn
from hydra.utils import instantiate
from omegaconf import DictConfig

from hydra_plugins.mnist_classifier_sweepers.sweeps import SweeperBase, start_sweep
from mnist_classifier.errors import BadInput, failure_policy, one_line
from mnist_classifier.records import read_record
from mnist_classifier.selection import SELECTION_ATTR, Selection
from mnist_classifier.studies import TRIAL_NUMBER_KEY, open_storage, shown_storage, study_storage

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)
WAIT_S = 2.0  # how often a worker with no trial to start looks at the study again


class OptunaSweeper(SweeperBase):
    """Runs trials of an Optuna study over the search space `params` (Hydra's sweep syntax:
    `choice(...)`, `range(...)`, `interval(a, b)`, tagged `log` and/or `int`) until the study has
    `n_trials`, to the best of the selection metric (`selection` of the config: the job's result
    `<monitor>_best`, maximised or minimised by its mode). Sweep overrides on the command line join
    `params`."""

    def __init__(
        self,
        study_name: str,
        storage: str | None,
        n_trials: int,
        n_jobs: int,
        heartbeat_interval: int | None,
        grace_period: int | None,
        max_retry: int,
        sampler: DictConfig | None = None,
        params: DictConfig | None = None,
    ) -> None:
        super().__init__(params)
        self.study_name = study_name
        self.storage = storage
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.max_retry = max_retry
        self.sampler = sampler

    def run_jobs(self, arguments: list[str]) -> None:
        with failure_policy():  # bad input is one line and exit status 2, before any trial starts
            search_space, fixed = self._search_space(arguments)
            sweep_dir = start_sweep(self.config)
            storage = study_storage(self.storage, sweep_dir)
            backend = open_storage(storage, self.heartbeat_interval, self.grace_period, self.max_retry)
            study = self._study(backend, storage)
        done, running = progress(study)
        log.info(
            "study %s in %s: %d of %d trials done, %d running",
            self.study_name,
            shown_storage(storage),
            done,
            self.n_trials,
            running,
        )
        seeded = False
        with failure_policy(), Heartbeats(backend, self.study_name) as heartbeats:
            while True:
                optuna_fail_stale_trials(study)
                done, running = progress(study)
                wanted = min(self.n_jobs, self.n_trials - done - running)
                if wanted > 0:
                    with warnings.catch_warnings():
                        # Optuna's note that heartbeats are meant for `optimize`: this worker beats them
                        # itself (Heartbeats), as `optimize` does.
                        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be")
                        trials = [study.ask() for _ in range(wanted)]  # dead workers' trials' retries first
                    if not seeded and self.sampler is not None:
                        study.sampler = self._sampler(trials[0].number)
                        seeded = True
                    self._run_batch(study, trials, search_space, fixed, heartbeats)
                elif running and heartbeats.interval:  # stay while a dead worker's trial may come back
                    time.sleep(WAIT_S)
                else:
                    break

    def _study(self, backend: "optuna.storages.BaseStorage", storage: str) -> "optuna.Study":
        """The study, created or continued; BadInput if it exists with the other direction. It keeps
        the selection it optimises, for reports made from the storage alone."""
        import optuna

        selection = Selection.of(self.config)
        existing = {study.study_name: study for study in backend.get_all_studies()}.get(self.study_name)
        directions = [direction.name.lower() for direction in existing.directions] if existing else []
        if directions and directions != [selection.direction]:
            mode = "max" if directions[0] == "maximize" else "min"
            raise BadInput(
                f"selection.mode={selection.mode} is invalid: study {self.study_name} in "
                f"{shown_storage(storage)} is to {directions[0]}; give selection.mode={mode}, or another "
                "hydra.sweeper.study_name"
            )
        study = optuna.create_study(
            study_name=self.study_name, storage=backend, direction=selection.direction, load_if_exists=True
        )
        study.set_user_attr(SELECTION_ATTR, asdict(selection))
        return study

    def _run_batch(
        self,
        study: "optuna.Study",
        trials: list["optuna.Trial"],
        search_space: dict[str, "optuna.distributions.BaseDistribution"],
        fixed: list[str],
        heartbeats: "Heartbeats",
    ) -> None:
        """Draw the trials' values, run their jobs at once, and tell the study their results."""
        with heartbeats.beating([trial.number for trial in trials]):
            for trial in trials:
                suggest(trial, search_space)
            batch = [trial_overrides(fixed, trial) for trial in trials]
            self.validate_batch_is_legal(batch)
            # Job numbers follow the first trial's: consecutive in a batch, for the parallel launcher's GPUs.
            for trial, job in zip(trials, self.launcher.launch(batch, trials[0].number), strict=True):
                self._tell(study, trial, job)

    def _sampler(self, first_trial: int) -> "optuna.samplers.BaseSampler":
        """The configured sampler; its seed offset by this worker's first trial number, which no other
        worker has, so that workers (and a continued study) do not draw the same trials."""
        assert self.sampler is not None
        seed = self.sampler.get("seed")
        return instantiate(self.sampler, **({"seed": seed + first_trial} if seed is not None else {}))

    def _search_space(self, arguments: list[str]) -> tuple[dict[str, Any], list[str]]:
        """The distributions of the sweep overrides, and the fixed overrides every trial gets."""
        overrides = {override.key_or_group: override for override in self.sweep_overrides(arguments)}
        search_space = {
            key: distribution(override) for key, override in overrides.items() if override.is_sweep_override()
        }
        fixed = [override.input_line for override in overrides.values() if not override.is_sweep_override()]
        return search_space, fixed

    def _tell(self, study: "optuna.Study", trial: "optuna.Trial", job: JobReturn) -> None:
        """Tell the study the job's result, and keep its record (job.json) with the trial, where the
        report of every worker's trials reads it."""
        import optuna
        from optuna.trial import TrialState

        run_dir = Path(job.hydra_cfg.hydra.runtime.output_dir)
        record = read_record(run_dir) or {"status": "failed"}
        record.pop("traceback", None)  # it stays in the run dir's job.json
        record["run_dir"] = str(run_dir)
        try:
            value = job.return_value[Selection.of(self.config).best_key]
        except optuna.TrialPruned:
            state, value = TrialState.PRUNED, None
        except Exception as error:  # the job failed, or returned no objective: the study goes on
            state, value = TrialState.FAIL, None
            record["error"] = record.get("error") or one_line(error)
        else:
            state = TrialState.COMPLETE
        try:
            trial.set_user_attr("job", record)
            study.tell(trial, value, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            log.warning("trial %d was failed by another worker: its heartbeat had stopped", trial.number)


class Heartbeats:
    """A thread recording a heartbeat, every `interval` seconds, for each trial this worker runs: what
    Optuna's `Study.optimize` does around each trial. Nothing for a storage without heartbeats."""

    def __init__(self, storage: "optuna.storages.BaseStorage", study_name: str) -> None:
        from optuna.storages import RDBStorage

        self.storage = storage
        self.study_id = storage.get_study_id_from_name(study_name)
        self.interval = storage.get_heartbeat_interval() if isinstance(storage, RDBStorage) else None
        self.trial_ids: set[int] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat_until_stopped, daemon=True, name="heartbeats")

    def __enter__(self) -> "Heartbeats":
        if self.interval:
            self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()

    @contextmanager
    def beating(self, numbers: list[int]) -> Iterator[None]:
        """Heartbeats for these trials while the block runs: one at once, then every interval."""
        if not self.interval:
            yield
            return
        ids = {
            self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number) for number in numbers
        }
        for trial_id in ids:
            self.storage.record_heartbeat(trial_id)
        with self.lock:
            self.trial_ids |= ids
        try:
            yield
        finally:
            with self.lock:
                self.trial_ids -= ids

    def _beat_until_stopped(self) -> None:
        while not self.stop.wait(self.interval):
            with self.lock:
                ids = list(self.trial_ids)
            for trial_id in ids:
                self.storage.record_heartbeat(trial_id)


def optuna_fail_stale_trials(study: "optuna.Study") -> None:
    """Optuna's fail_stale_trials: trials whose heartbeat stopped are failed (and retried)."""
    import optuna

    with warnings.catch_warnings(category=optuna.exceptions.ExperimentalWarning, action="ignore"):
        optuna.storages.fail_stale_trials(study)


def progress(study: "optuna.Study") -> tuple[int, int]:
    """(trials that count towards n_trials, trials running or waiting to run). Finished trials
    count, failed ones too, except a dead worker's trial that was retried: its retry counts."""
    import optuna
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    with warnings.catch_warnings(category=optuna.exceptions.ExperimentalWarning, action="ignore"):
        retried = {
            number
            for trial in trials
            for number in optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(trial)
        }
    done = sum(trial.state.is_finished() and trial.number not in retried for trial in trials)
    running = sum(trial.state == TrialState.RUNNING for trial in trials)
    return done, running


def distribution(override: Override) -> "optuna.distributions.BaseDistribution":
    """An Optuna distribution for a Hydra sweep override."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    sweep = override.value()
    if isinstance(sweep, ChoiceSweep):
        return CategoricalDistribution([as_choice(value) for value in sweep.list])
    if isinstance(sweep, RangeSweep):
        return CategoricalDistribution(list(override.sweep_iterator()))
    if isinstance(sweep, IntervalSweep):
        log_scale = "log" in sweep.tags
        if "int" in sweep.tags:
            return IntDistribution(int(sweep.start), int(sweep.end), log=log_scale)
        return FloatDistribution(sweep.start, sweep.end, log=log_scale)
    raise BadInput(
        f"{override.input_line} is invalid: the optuna sweeper samples choice(...), range(...) "
        "or interval(a, b), optionally tagged: tag(log, interval(a, b)), tag(int, interval(a, b))"
    )


def suggest(trial: "optuna.Trial", search_space: dict[str, "optuna.distributions.BaseDistribution"]) -> None:
    """Draw the trial's values from the study's sampler (a retried trial keeps its own)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    for name, space in search_space.items():
        if isinstance(space, CategoricalDistribution):
            trial.suggest_categorical(name, space.choices)
        elif isinstance(space, IntDistribution):
            trial.suggest_int(name, space.low, space.high, log=space.log)
        else:
            trial.suggest_float(name, space.low, space.high, log=space.log)


def trial_overrides(fixed: list[str], trial: "optuna.Trial") -> list[str]:
    """A trial's job: the fixed overrides, the trial's values, and which trial it is."""
    values = [f"{key}={'null' if value is None else value}" for key, value in trial.params.items()]
    return [*fixed, *values, f"{TRIAL_NUMBER_KEY}={trial.number}"]


def as_choice(value: Any) -> Any:
    """Optuna's categories must be None, bool, int, float or str: lists become override text."""
    return json.dumps(value, separators=(",", ":")) if isinstance(value, list | dict) else value
