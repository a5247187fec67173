"""Where a sweep's Optuna study lives, and the callback through which each trial's job reports to it.

A study's storage is an Optuna RDB URL (`sqlite:///...`, `postgresql+psycopg://...`) or the path of
a journal file (Optuna's JournalFileBackend), as `optuna-dashboard` takes them; by default SQLite
in the sweep dir. Used by the sweeper plugin, the jobs and the report. Optuna is imported only
when a study is used: Hydra imports the sweeper for every command.
"""

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnist_classifier.errors import BadInput, one_line

if TYPE_CHECKING:
    import optuna
    from optuna_integration import PyTorchLightningPruningCallback

STUDY_FILE = "optuna.db"  # the study's SQLite file in the sweep dir, unless storage is configured
TRIAL_NUMBER_KEY = "callbacks.optuna_pruning.trial_number"  # set for each job by the sweeper
STORAGE_KEY = "hydra.sweeper.storage"
STORAGES_ALLOWED = (
    "an Optuna database URL that answers (sqlite:///PATH, postgresql+psycopg://USER:PASSWORD@HOST/DB) "
    "or a journal file path in an existing folder"
)


def study_storage(storage: str | None, sweep_dir: str | Path) -> str:
    """The study's storage: the configured one, else SQLite in the sweep dir (computed here, not in
    the config, because Hydra resolves the sweeper's config before `${hydra:...}` works)."""
    return storage or f"sqlite:///{Path(sweep_dir).resolve()}/{STUDY_FILE}"


def sweep_study(sweeper: Mapping[str, Any], sweep_dir: str | Path) -> tuple[str, str] | None:
    """(storage, study name) of a sweep whose sweeper is an Optuna study; None for other sweepers."""
    study_name = sweeper.get("study_name")
    return (study_storage(sweeper.get("storage"), sweep_dir), study_name) if study_name else None


def is_database(storage: str) -> bool:
    """A database URL (Optuna's RDBStorage), not a journal file path."""
    return "://" in storage


def shown_storage(storage: str) -> str:
    """The storage as it may be printed: a URL's password hidden."""
    if not is_database(storage):
        return storage
    from sqlalchemy.engine import make_url

    return make_url(storage).render_as_string(hide_password=True)


def open_storage(
    storage: str,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    max_retry: int | None = None,
) -> "optuna.storages.BaseStorage":
    """The storage, connected; BadInput if it cannot be used (no server, a wrong password, a
    missing driver, a journal in a missing folder).

    On a database, a trial whose heartbeat stops for `grace_period` seconds (its worker died) is
    failed by the next worker that looks, and retried up to `max_retry` times. A journal file has no
    heartbeat in Optuna: there a dead worker's trial stays RUNNING.
    """
    import optuna
    from optuna.storages import JournalStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    if not is_database(storage):
        folder = Path(storage).resolve().parent
        if not folder.is_dir():
            raise BadInput(f"{STORAGE_KEY}={storage} is invalid: no folder {folder}; {STORAGES_ALLOWED}")
        # The symlink lock is atomic on network file systems (NFS), where several machines append.
        return JournalStorage(JournalFileBackend(storage, lock_obj=JournalFileSymlinkLock(storage)))
    try:
        with warnings.catch_warnings(category=optuna.exceptions.ExperimentalWarning, action="ignore"):
            retry = RetryHeartbeatStaleTrialCallback(max_retry) if heartbeat_interval and max_retry else None
            return connected(storage, heartbeat_interval, grace_period, retry)
    except Exception as error:  # the driver's and SQLAlchemy's errors: connection, login, URL, rights
        reason = (
            one_line(error.__cause__ or error)
            .removeprefix("connection failed: ")
            .removeprefix("connection is bad: ")
        )
        raise BadInput(
            f"{STORAGE_KEY}={shown_storage(storage)} is invalid: {reason}; {STORAGES_ALLOWED}"
        ) from error


def connected(
    url: str,
    heartbeat_interval: int | None,
    grace_period: int | None,
    retry: "optuna.storages.RetryHeartbeatStaleTrialCallback | None",
    attempts: int = 3,
) -> "optuna.storages.RDBStorage":
    """Optuna's RDBStorage, which creates its tables in a new database: workers started together
    race to, and all but one fail on a duplicate; the table creation is tried again, finding the
    tables the winner made."""
    from optuna.storages import RDBStorage
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    def storage() -> RDBStorage:
        return RDBStorage(
            url,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=retry,
        )

    for _ in range(attempts - 1):
        try:
            return storage()
        except (IntegrityError, ProgrammingError):
            continue  # another worker was making the tables: they are there now
    return storage()


def trial_pruning(
    storage: str | None,
    sweep_dir: str,
    study_name: str,
    trial_number: int | None,
    monitor: str,
    pruner: "optuna.pruners.BasePruner | None" = None,
) -> "PyTorchLightningPruningCallback":
    """The Lightning callback a job runs: reports `monitor` to its trial after every validation and
    stops the job (raising optuna.TrialPruned) when the pruner says so; a None pruner never prunes."""
    import optuna
    from optuna_integration import PyTorchLightningPruningCallback

    if trial_number is None:
        raise BadInput(
            f"{TRIAL_NUMBER_KEY} is not set: hparams_search=optuna runs as a sweep, "
            "python train.py -m hparams_search=optuna"
        )
    backend = open_storage(study_storage(storage, sweep_dir))
    study = optuna.load_study(
        study_name=study_name, storage=backend, pruner=pruner or optuna.pruners.NopPruner()
    )
    trial_id = backend.get_trial_id_from_study_id_trial_number(
        backend.get_study_id_from_name(study_name), trial_number
    )
    return PyTorchLightningPruningCallback(optuna.trial.Trial(study, trial_id), monitor=monitor)


def raise_if_pruned(callbacks: list) -> None:
    """Raise optuna.TrialPruned after fit if the pruner stopped the trial: in a data-parallel trial
    Optuna's callback can only record it, and asks for `check_pruned()` after `Trainer.fit`."""
    for callback in callbacks:
        if type(callback).__name__ == "PyTorchLightningPruningCallback":
            callback.check_pruned()
