"""What both sweepers are (grid_sweeper, optuna_sweeper): SweeperBase sets a sweeper up, parses its
`params` and the command line's sweep overrides, runs a data-parallel job's other ranks as that job
instead of a sweep (mnist_classifier.relaunch), and reports the sweep at its end; start_sweep makes
the sweep dir.
"""

from abc import abstractmethod
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from mnist_classifier.errors import failure_policy
from mnist_classifier.relaunch import relaunched_job, run_relaunched_job


class SweeperBase(Sweeper):
    """A sweeper of this project, written on Hydra's public Sweeper plugin API. `params` are sweep
    overrides from the sweeper's config, which those on the command line join; a subclass runs the
    sweep's jobs in `run_jobs`, and the sweep report follows."""

    def __init__(self, params: DictConfig | None = None) -> None:
        self.params = dict(params or {})
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        self.launcher: Launcher | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function
        # `${hydra:...}` resolvable in the sweeper's process, as Hydra makes it only inside jobs: the
        # sweep dir is under `paths.log_dir`, which is relative to `${hydra:runtime.cwd}`.
        HydraConfig.instance().set_config(config)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        if (job := relaunched_job()) is not None:  # a rank of a data-parallel job: that job, no new sweep
            run_relaunched_job(self.hydra_context, self.task_function, self.config, job)
            return []
        returns = self.run_jobs(arguments)
        finish_sweep(self.config)
        return returns

    @abstractmethod
    def run_jobs(self, arguments: list[str]) -> Any:
        """Run the sweep's jobs (the sweep dir made by start_sweep); what `sweep` returns."""

    def sweep_overrides(self, arguments: list[str]) -> list[Override]:
        """`params`, then the command line's sweep overrides (`arguments`), parsed."""
        assert self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        lines = [f"{key}={value}" for key, value in self.params.items()] + arguments
        return parser.parse_overrides(lines)


def start_sweep(config: DictConfig) -> Path:
    """The sweep dir, made, with the sweep's config in it (multirun.yaml, as Hydra's sweepers do)."""
    sweep_dir = Path(config.hydra.sweep.dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, sweep_dir / "multirun.yaml")
    return sweep_dir


def finish_sweep(config: DictConfig) -> None:
    """Write and print the sweep's report into its dir; then, when a job of this worker failed (which
    stopped none of the others), one line and exit status 1."""
    from mnist_classifier.report import report_sweep  # plots and Optuna: only at a sweep's end

    sweep_dir = Path(config.hydra.sweep.dir)
    jobs = report_sweep(sweep_dir, config)
    mine = [job for job in jobs if job.ran_in(sweep_dir)]  # not the other workers' of a shared study
    if failed := [job for job in mine if job.status == "failed"]:
        with failure_policy():
            raise RuntimeError(
                f"{len(failed)} of {len(mine)} jobs failed, the first {failed[0].name}: {failed[0].error} "
                f"(see {sweep_dir / 'report.md'})"
            )
