"""What both sweepers do the same way: start the sweep dir, report the sweep at its end, and run a
data-parallel job's other ranks.

Lightning starts the other ranks of a DDP job by running the command line again (`train.py -m
...`), which would start a new sweep in each rank. A job names itself in its environment
(mnist_classifier.records), so a sweeper started by a job's process runs that one job, in the
same run dir, instead of sweeping.
"""

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import run_job
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

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


def run_relaunched_job(
    hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig, job: dict[str, Any]
) -> None:
    """Run, in this process, the sweep job this process is a rank of: its overrides, its run dir,
    its job number. Its failure is this process's (one line, exit status 1), so the job fails."""
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(job["overrides"]))
    output_dir = Path(job["output_dir"])
    with open_dict(sweep_config):
        sweep_config.hydra.sweep.dir = str(output_dir.parent)
        sweep_config.hydra.sweep.subdir = output_dir.name
        sweep_config.hydra.job.num = job["num"]
        sweep_config.hydra.output_subdir = None  # the job's own process writes .hydra/
    job_return = run_job(
        hydra_context=hydra_context,
        task_function=task_function,
        config=sweep_config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    with failure_policy():
        job_return.return_value  # noqa: B018 -- raises the job's error
