"""What a run sends to every logger it has, beyond the curves Lightning logs as it trains: the
hyperparameters with the final results, files (the tested checkpoint, the composed config) and
figures, and each logger's end. Hyperparameters and results go through Lightning's public Logger
API, so any logger gets them, a tracker of the user's own included; files and figures go where a
tracker keeps them (TensorBoard's images, MLflow's artifacts, a W&B run's files), and nowhere for
a logger that has no such place (CSV: the run dir holds the files already).
"""

import json
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from matplotlib.figure import Figure

from mnist_classifier.records import LINKS_FILE
from mnist_classifier.tracker_settings import local_store, mlflow_link

PREFIX = "hparams/"  # the tags of the final values, apart from the curves they end


def open_runs(loggers: list[Logger]) -> None:
    """Make each tracker's experiment and run now, while the store's lock is held
    (tracker_settings.local_stores_locked), not when the first metric is logged."""
    for logger in loggers:
        if isinstance(logger, MLFlowLogger):
            logger.experiment  # noqa: B018 (the property makes them)


def log_results(trainer: Trainer, params: Mapping[str, Any], results: Mapping[str, float]) -> None:
    """Record the run's hyperparameters with its final results, tagged `hparams/<metric>` so as not to
    add a point to the metric's own curve. Written when the run ends, so that they are real values;
    NaN (not measured) is left out."""
    values = {PREFIX + key: value for key, value in results.items() if value == value}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            # The HParams tab: settings and results in one entry, in the run's own TensorBoard run
            # (`run_name="."`), which SummaryWriter writes also for a run that measured nothing.
            writer = logger.experiment
            writer.add_hparams(dict(params), values, run_name=".", global_step=trainer.global_step)
        else:
            logger.log_hyperparams(dict(params))
            logger.log_metrics(values, step=trainer.global_step)


def log_files(trainer: Trainer, files: Iterable[tuple[str, Path]]) -> None:
    """Store each file with the trackers that keep files, in the folder it is paired with (MLflow's
    artifacts, a W&B run's files, which W&B uploads when the run ends or is synced)."""
    for logger in _rank_zero(trainer):
        for folder, path in files:
            if isinstance(logger, MLFlowLogger):
                logger.experiment.log_artifact(logger.run_id, str(path), folder)
            elif isinstance(logger, WandbLogger):
                copied = Path(logger.experiment.dir, folder)
                copied.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, copied / path.name)


def log_figure(trainer: Trainer, tag: str, figure: Figure) -> None:
    """A matplotlib figure in each tracker's images: TensorBoard's Images tab, an MLflow artifact
    `<tag>.png`, a W&B image."""
    for logger in _rank_zero(trainer):
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(tag, figure, trainer.global_step, close=False)
        elif isinstance(logger, MLFlowLogger):
            logger.experiment.log_figure(logger.run_id, figure, f"{tag}.png")
        elif isinstance(logger, WandbLogger):
            import wandb

            logger.log_image(tag, [wandb.Image(figure)], step=trainer.global_step)


def finish(trainer: Trainer, failed: bool) -> None:
    """Finalize every logger again, as Lightning did when the last stage ended, so that what came
    since is written (the CSV logger writes only then) and the run is marked finished or failed; and
    end the runs of the trackers that keep one open per process (W&B), so that the next job of a
    sweep in this process starts a run of its own."""
    for logger in _rank_zero(trainer):
        logger.finalize("failed" if failed else "success")
        if isinstance(logger, WandbLogger):
            logger.experiment.finish(exit_code=1 if failed else 0)


def record_links(trainer: Trainer, run_dir: Path) -> None:
    """Write where the trackers show this run (an MLflow run's page) into the run dir, for the sweep
    report's links."""
    links = {}
    for logger in _rank_zero(trainer):
        if isinstance(logger, MLFlowLogger):
            links["mlflow"] = mlflow_link(logger.experiment.tracking_uri, logger.experiment_id, logger.run_id)
    if links:
        (run_dir / LINKS_FILE).write_text(json.dumps(links, indent=2))


def tracker_commands(trainer: Trainer, runs_dir: str) -> dict[str, str]:
    """Where the run shows in its trackers, for the run's summary: TensorBoard over `runs_dir` (the
    sweep's, or every run's), MLflow's UI on a local store or the run's page on a server, W&B's upload
    of an offline run or its page online. Asked while the trackers' runs are open."""
    commands = {}
    for logger in _rank_zero(trainer):
        if isinstance(logger, TensorBoardLogger):
            commands["dashboards"] = f"tensorboard --logdir {runs_dir}"
        elif isinstance(logger, MLFlowLogger):
            uri = logger.experiment.tracking_uri
            commands["mlflow"] = (
                f"mlflow ui --backend-store-uri {uri}"
                if local_store(uri)
                else mlflow_link(uri, logger.experiment_id, logger.run_id)
            )
        elif isinstance(logger, WandbLogger):
            run = logger.experiment
            commands["wandb"] = f"wandb sync {Path(run.dir).parent}" if run.offline else run.url
    return commands


def _rank_zero(trainer: Trainer) -> list[Logger]:
    """The run's loggers in the process that writes (none in the others of a data-parallel run)."""
    return list(trainer.loggers) if trainer.is_global_zero else []
