"""Where a sweep's Optuna study lives, and the callback through which each trial's job reports to
it. Used by the jobs and the sweep report; the sweeper plugin builds on it. Optuna is imported
only when a study is used."""

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    from optuna_integration import PyTorchLightningPruningCallback

STUDY_FILE = "optuna.db"  # the study's SQLite file in the sweep dir, unless storage is configured
TRIAL_NUMBER_KEY = "callbacks.optuna_pruning.trial_number"  # set for each job by the sweeper


def study_storage(storage: str | None, sweep_dir: str | Path) -> str:
    """The study's storage URL: the configured one, else SQLite in the sweep dir (computed here, not
    in the config, because Hydra resolves the sweeper's config before `${hydra:...}` works)."""
    return storage or f"sqlite:///{Path(sweep_dir).resolve()}/{STUDY_FILE}"


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
        raise ValueError(
            f"{TRIAL_NUMBER_KEY} is not set: hparams_search=optuna runs as a sweep, "
            "python train.py -m hparams_search=optuna"
        )
    storage_backend = optuna.storages.get_storage(study_storage(storage, sweep_dir))
    study = optuna.load_study(
        study_name=study_name, storage=storage_backend, pruner=pruner or optuna.pruners.NopPruner()
    )
    trial_id = storage_backend.get_trial_id_from_study_id_trial_number(
        storage_backend.get_study_id_from_name(study_name), trial_number
    )
    return PyTorchLightningPruningCallback(optuna.trial.Trial(study, trial_id), monitor=monitor)
