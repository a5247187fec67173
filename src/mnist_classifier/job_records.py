"""Each job of a sweep records its outcome in its run dir (`job.json`); the sweep's report is
written from those records, or from the study's storage for an Optuna sweep, when the sweep ends
(mnist_classifier.report).

A job also names itself in its process's environment while it runs, so that the processes
Lightning starts for the other ranks of a data-parallel job (which run the sweep's command line
again) can run that same job instead of a new sweep (`relaunched_job`).
"""

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnist_classifier.errors import one_line
from mnist_classifier.overrides import override_key

JOB_RECORD = "job.json"
JOB_ENV = "MNIST_CLASSIFIER_SWEEP_JOB"  # the running job, inherited by the processes it starts


def named_overrides(lines: list[str], excluded: list[str]) -> dict[str, str]:
    """A job's overrides as its run dir's name shows them: without the keys Hydra leaves out of the
    name (paths, and what the sweeper adds itself, e.g. the Optuna trial number)."""
    return {override_key(line): line.split("=", 1)[1] for line in lines if override_key(line) not in excluded}


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The record a job left in its run dir; None if it left none (killed, or still running)."""
    path = run_dir / JOB_RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def relaunched_job() -> dict[str, Any] | None:
    """The sweep job this process is a rank of: set when a job's process started this one (Lightning
    re-runs the command line for each data-parallel rank); None in a sweep's own process."""
    job = json.loads(os.environ.get(JOB_ENV, "null"))
    return job if job is not None and job["pid"] != os.getpid() else None


class JobRecords(Callback):
    """Hydra callback: records each job's outcome in its run dir, and reports the sweep at its end.

    A failed job neither stops the sweep nor the report: it is recorded with its error, and the
    sweep exits non-zero after the report is written and printed.
    """

    def __init__(self) -> None:
        self.started = 0.0
        self.devices: str | None = None

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.perf_counter()
        self.devices = os.environ.get("CUDA_VISIBLE_DEVICES")  # set per job by hydra.job.env_set
        if config.hydra.mode.name == "MULTIRUN":
            job = {
                "overrides": list(config.hydra.overrides.task),
                "output_dir": config.hydra.runtime.output_dir,
                "num": config.hydra.job.num,
                "pid": os.getpid(),
            }
            os.environ[JOB_ENV] = json.dumps(job)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode.name != "MULTIRUN":
            return
        os.environ.pop(JOB_ENV, None)
        import torch  # the job has imported it already
        from lightning.pytorch.utilities.rank_zero import rank_zero_only

        if rank_zero_only.rank != 0:  # a data-parallel job is recorded once, by its first process
            return
        excluded = list(config.hydra.job.config.override_dirname.exclude_keys)
        record: dict[str, Any] = {
            "wall_s": round(time.perf_counter() - self.started, 3),
            "torch_threads": torch.get_num_threads(),
            "cuda_visible_devices": self.devices,
            "overrides": named_overrides(list(config.hydra.overrides.task), excluded),
        }
        try:
            record |= {"status": "finished", "metrics": job_return.return_value}
        except Exception as error:  # return_value raises the job's exception when it failed
            import optuna

            pruned = isinstance(error, optuna.TrialPruned)
            record |= {"status": "pruned" if pruned else "failed", "error": one_line(error)}
            if not pruned:
                record["traceback"] = "".join(traceback.format_exception(error))
        Path(config.hydra.runtime.output_dir, JOB_RECORD).write_text(json.dumps(record, indent=2))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if relaunched_job() is not None:  # a rank of a job: the sweep's own process reports
            return
        from mnist_classifier.report import report_sweep  # plots and Optuna: only at a sweep's end

        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = report_sweep(sweep_dir, config.hydra.sweeper)
        mine = [job for job in jobs if job.ran_in(sweep_dir)]  # not the other workers' of a shared study
        failed = [job for job in mine if job.status == "failed"]
        if failed:
            # SystemExit, since Hydra turns a callback's exceptions into warnings and exits 0.
            sys.exit(
                f"error: {len(failed)} of {len(mine)} jobs failed, the first {failed[0].name}: "
                f"{failed[0].error} (see {sweep_dir / 'report.md'})"
            )
