"""hydra/launcher=parallel: Hydra's joblib launcher, giving each job its own GPU on a machine with
several. Written on Hydra's public Launcher plugin API."""

import os
from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

GPU_ENV = "CUDA_VISIBLE_DEVICES"


class ParallelLauncher(JoblibLauncher):
    """Runs each batch of jobs `n_jobs` at a time in joblib's worker processes. With several GPUs
    visible, job k sees only GPU k mod (number of GPUs), through `hydra.job.env_set`: the jobs of a
    batch are numbered consecutively, so up to one per GPU run at once, each on its own."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        gpus = visible_gpus()
        if len(gpus) > 1:
            job_overrides = [
                [*overrides, f"++hydra.job.env_set.{GPU_ENV}={gpus[(initial_job_idx + index) % len(gpus)]}"]
                for index, overrides in enumerate(job_overrides)
            ]
        return super().launch(job_overrides, initial_job_idx)


def visible_gpus() -> list[str]:
    """The GPUs this process may use: those CUDA_VISIBLE_DEVICES lists when set, else every one
    torch finds (counted here, in the sweep's process: a job's CUDA must start after the choice)."""
    listed = os.environ.get(GPU_ENV)
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]
