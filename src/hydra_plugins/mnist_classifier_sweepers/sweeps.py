"""What both sweepers do the same way: start the sweep dir and report the sweep at its end. Both run
a data-parallel job's other ranks as that job, not a sweep (mnist_classifier.relaunch).
"""

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from mnist_classifier.errors import failure_policy


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


def finish_sweep(config: DictConfig) -> None:
    """Write and print the sweep's report into its dir; then, when a job of this worker failed (which
    stopped none of the others), one line and exit status 1."""
    from mnist_classifier.report import report_sweep  # plots and Optuna: only at a sweep's end

    sweep_dir = Path(config.hydra.sweep.dir)
    jobs = report_sweep(sweep_dir, config.hydra.sweeper)
    mine = [job for job in jobs if job.ran_in(sweep_dir)]  # not the other workers' of a shared study
    if failed := [job for job in mine if job.status == "failed"]:
        with failure_policy():
            raise RuntimeError(
                f"{len(failed)} of {len(mine)} jobs failed, the first {failed[0].name}: {failed[0].error} "
                f"(see {sweep_dir / 'report.md'})"
            )
