"""Every combination of the swept values, as Hydra's basic sweeper runs them, except that a
failed job does not stop the sweep. Written on Hydra's public Sweeper plugin API."""

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from mnist_classifier.overrides import combinations


def set_hydra_config(config: DictConfig) -> None:
    """Make `${hydra:...}` resolvable in the sweeper's process, as Hydra does only inside jobs: the
    sweep dir is under `paths.log_dir`, which is relative to `${hydra:runtime.cwd}`."""
    HydraConfig.instance().set_config(config)


def start_sweep(config: DictConfig) -> Path:
    """The sweep dir, made, with the sweep's config in it (multirun.yaml, as Hydra's sweepers do)."""
    sweep_dir = Path(config.hydra.sweep.dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, sweep_dir / "multirun.yaml")
    return sweep_dir


class GridSweeper(Sweeper):
    """Runs every combination of the swept values in batches of `max_batch_size` jobs (all at once
    if null). Hydra's basic sweeper raises at the first batch with a failed job, which skips the
    remaining batches and the end-of-sweep callbacks; this one runs every batch, so the sweep
    report lists each failure with its error (and the sweep then exits non-zero)."""

    def __init__(self, max_batch_size: int | None = None, params: DictConfig | None = None) -> None:
        self.max_batch_size = max_batch_size
        self.params = dict(params or {})
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Launcher | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        set_hydra_config(config)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list[list[JobReturn]]:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
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
        return returns
