"""A data-parallel sweep job's other ranks run that job, not a sweep of their own.

Lightning starts the other ranks of a DDP job by running the command line again (`train.py -m
...`), which would start a new sweep in each rank. So a sweep job names itself in its process's
environment while it runs (`name_job`, called by the JobRecords callback, mnist_classifier.records),
the processes it starts inherit the name, and a sweeper started in one of them finds the job
(`relaunched_job`) and runs that one job, in the same run dir, instead of sweeping
(`run_relaunched_job`, called by both sweepers).
"""

import json
import os
from pathlib import Path
from typing import Any

from hydra.core.utils import run_job
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from mnist_classifier.errors import failure_policy

JOB_ENV = "MNIST_CLASSIFIER_SWEEP_JOB"  # the running job, inherited by the processes it starts


def name_job(config: DictConfig) -> None:
    """Name the sweep job that starts in this process (its overrides, run dir and job number) in the
    environment that the processes it starts inherit."""
    job = {
        "overrides": list(config.hydra.overrides.task),
        "output_dir": config.hydra.runtime.output_dir,
        "num": config.hydra.job.num,
        "pid": os.getpid(),
    }
    os.environ[JOB_ENV] = json.dumps(job)


def forget_job() -> None:
    """The job has ended: the processes this one starts from now on are none of its ranks."""
    os.environ.pop(JOB_ENV, None)


def relaunched_job() -> dict[str, Any] | None:
    """The sweep job this process is a rank of: set when a job's process started this one (Lightning
    re-runs the command line for each data-parallel rank); None in a sweep's own process."""
    job = json.loads(os.environ.get(JOB_ENV, "null"))
    return job if job is not None and job["pid"] != os.getpid() else None


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
