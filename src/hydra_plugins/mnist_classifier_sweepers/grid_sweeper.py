"""Every combination of the swept values, as Hydra's basic sweeper runs them, except that a
failed job does not stop the sweep. Written on Hydra's public Sweeper plugin API (sweeps.SweeperBase)."""

from hydra.core.utils import JobReturn
from omegaconf import DictConfig

from hydra_plugins.mnist_classifier_sweepers.sweeps import SweeperBase, start_sweep
from mnist_classifier.overrides import combinations


class GridSweeper(SweeperBase):
    """Runs every combination of the swept values in batches of `max_batch_size` jobs (all at once
    if null). Hydra's basic sweeper raises at the first batch with a failed job, which skips the
    remaining batches and the end-of-sweep callbacks; this one runs every batch, then writes the
    sweep report, which lists each failure with its error (and the sweep then exits non-zero)."""

    def __init__(self, max_batch_size: int | None = None, params: DictConfig | None = None) -> None:
        super().__init__(params)
        self.max_batch_size = max_batch_size

    def run_jobs(self, arguments: list[str]) -> list[list[JobReturn]]:
        assert self.config is not None and self.launcher is not None
        jobs = combinations(self.sweep_overrides(arguments))
        start_sweep(self.config)
        size = self.max_batch_size or len(jobs)
        returns: list[list[JobReturn]] = []
        for first in range(0, len(jobs), size):
            batch = jobs[first : first + size]
            self.validate_batch_is_legal(batch)
            returns.append(list(self.launcher.launch(batch, initial_job_idx=first)))
        return returns
