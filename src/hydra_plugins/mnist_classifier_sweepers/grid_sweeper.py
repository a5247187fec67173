"""Hydra's basic grid sweeper, except that a failed job does not stop the sweep."""

from collections.abc import Sequence
from pathlib import Path

from hydra._internal.core_plugins import basic_sweeper
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


def set_hydra_config(config: DictConfig) -> None:
    """Make `${hydra:...}` resolvable in the sweeper's process, as Hydra does only inside jobs: the
    sweep dir is under `paths.log_dir`, which is relative to `${hydra:runtime.cwd}`."""
    HydraConfig.instance().set_config(config)


class GridSweeper(basic_sweeper.BasicSweeper):
    """Every combination of the swept values, in batches of `max_batch_size` jobs (all at once if
    null), as Hydra's basic sweeper runs them. Hydra's sweeper raises at the first batch with a
    failed job, which skips the remaining batches and the end-of-sweep callbacks; this one runs
    every batch, so the sweep report lists each failure with its error (and the sweep then exits
    non-zero)."""

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        set_hydra_config(config)

    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides(self._parse_config() + arguments)
        self.overrides = self.split_arguments(overrides, self.max_batch_size)

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        returns: list[Sequence[JobReturn]] = []
        while not self.is_done():
            batch = self.get_job_batch()
            self.validate_batch_is_legal(batch)
            returns.append(self.launcher.launch(batch, initial_job_idx=sum(map(len, returns))))
        return returns
