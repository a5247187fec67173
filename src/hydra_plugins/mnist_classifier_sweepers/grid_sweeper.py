"""Every combination of the swept values, as Hydra's basic sweeper runs them, except that a
failed job does not stop the sweep. Written on Hydra's public Sweeper plugin API."""

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.mnist_classifier_sweepers.sweeps import finish_sweep, set_hydra_config, start_sweep
from mnist_classifier.config import combinations
from mnist_classifier.relaunch import relaunched_job, run_relaunched_job


class GridSweeper(Sweeper):
    """Runs every combination of the swept values in batches of `max_batch_size` jobs (all at once
    if null). Hydra's basic sweeper raises at the first batch with a failed job, which skips the
    remaining batches and the end-of-sweep callbacks; this one runs every batch, then writes the
    sweep report, which lists each failure with its error (and the sweep then exits non-zero)."""

    def __init__(self, max_batch_size: int | None = None, params: DictConfig | None = None) -> None:
        self.max_batch_size = max_batch_size
        self.params = dict(params or {})
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        self.launcher: Launcher | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function
        set_hydra_config(config)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list[list[JobReturn]]:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        if (job := relaunched_job()) is not None:  # a rank of a data-parallel job: that job, no new sweep
            assert self.task_function is not None
            run_relaunched_job(self.hydra_context, self.task_function, self.config, job)
            return []
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        lines = [f"{key}={value}" for key, value in self.params.items()] + arguments
        jobs = combinations(parser.parse_overrides(lines))
        start_sweep(self.config)
        size = self.max_batch_size or len(jobs)
        returns: list[list[JobReturn]] = []
        for first in range(0, len(jobs), size):
            batch = jobs[first : first + size]
            self.validate_batch_is_legal(batch)
            returns.append(list(self.launcher.launch(batch, initial_job_idx=first)))
        finish_sweep(self.config)
        return returns
