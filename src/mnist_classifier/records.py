"""What each run records in its dir: `.hydra/environment.json` (what reproduces it, beside Hydra's
config and overrides), and for each job of a sweep `job.json` (its outcome), which the sweep report
reads (mnist_classifier.report). Both are written by Hydra callbacks (conf/hydra/default.yaml).

environment.json holds the CPU kernels' settings (mnist_classifier.cpu_numerics); job.json the CPU
seconds of the job and of the other processes beside it (mnist_classifier.cpu_time). While a sweep
job runs, JobRecords names it in its process's environment for its data-parallel ranks
(mnist_classifier.relaunch).
"""

import json
import os
import platform
import subprocess
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mnist_classifier.cpu_numerics import CPU_NUMERICS, SWITCH, cpu_isa
from mnist_classifier.cpu_time import OtherWork
from mnist_classifier.errors import one_line
from mnist_classifier.overrides import override_key
from mnist_classifier.relaunch import forget_job, name_job

ENVIRONMENT_FILE = "environment.json"  # in <run dir>/.hydra/, beside config.yaml and overrides.yaml
PACKAGES = (
    "torch",
    "torchvision",
    "lightning",
    "torchmetrics",
    "hydra-core",
    "tensorboard",
    "optuna",
    "numpy",
)


def git_state(directory: Path) -> dict[str, Any]:
    """The commit of the git checkout holding `directory`, and whether it has uncommitted changes
    (untracked files aside); None for both outside a checkout or without git."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        }
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def environment() -> dict[str, Any]:
    """The command, the package versions, the machine's accelerator and the code's git commit."""
    import torch  # here, not above: Hydra loads this module for every command, --help included

    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "cpu": cpu_model(),
        "torch_threads": torch.get_num_threads(),  # sums split over threads: another count, other figures
        # MNIST_CPU_KERNELS and the variables it sets; null: left to the libraries, which take the
        # widest of cpu_isa
        "cpu_numerics": {name: os.environ.get(name) for name in (SWITCH, *CPU_NUMERICS)},
        "cpu_isa": cpu_isa(),
        "cpu_kernels": torch.backends.cpu.get_cpu_capability(),  # ATen's, as torch took them when it loaded
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "git": git_state(Path(__file__).parent),
    }


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what the platform says."""
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


class RunRecord(Callback):
    """Hydra callback: writes environment.json into each run's .hydra/ dir as the run starts."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.output_subdir is None:  # no .hydra/ dir: a data-parallel run's other ranks
            return
        hydra_dir = Path(config.hydra.runtime.output_dir, config.hydra.output_subdir)
        hydra_dir.mkdir(parents=True, exist_ok=True)
        (hydra_dir / ENVIRONMENT_FILE).write_text(json.dumps(environment(), indent=2))


JOB_RECORD = "job.json"
UNFINISHED = {"status": "unfinished", "error": "no record: the job was killed or is still running"}


def named_overrides(lines: list[str], excluded: list[str]) -> dict[str, str]:
    """A job's overrides as its run dir's name shows them: without the keys Hydra leaves out of the
    name (paths, and what the sweeper adds itself, e.g. the Optuna trial number)."""
    return {override_key(line): line.split("=", 1)[1] for line in lines if override_key(line) not in excluded}


LINKS_FILE = "trackers.json"  # where the trackers show a run (mnist_classifier.tracking writes it)


def read_links(run_dir: Path) -> dict[str, str]:
    """Where the trackers show a run, by tracker (an MLflow run's page); none if it logged to none."""
    path = run_dir / LINKS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The record a job left in its run dir; None if it left none (killed, or still running)."""
    path = run_dir / JOB_RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def sweep_records(sweep_dir: Path) -> list[tuple[Path, dict[str, str], dict[str, Any]]]:
    """Each job of a sweep dir (the run dirs holding Hydra's record of their overrides): its run dir,
    its overrides as the run dir's name shows them, and its record (UNFINISHED where it left none)."""
    found = []
    for overrides_file in sorted(sweep_dir.glob("*/.hydra/overrides.yaml")):
        run_dir = overrides_file.parent.parent
        excluded = OmegaConf.load(
            run_dir / ".hydra" / "hydra.yaml"
        ).hydra.job.config.override_dirname.exclude_keys
        overrides = named_overrides(list(OmegaConf.load(overrides_file)), list(excluded))
        found.append((run_dir, overrides, read_record(run_dir) or UNFINISHED))
    return found


class JobRecords(Callback):
    """Hydra callback: records each job's outcome in its run dir. A failed job is recorded with its
    error and traceback, a pruned one as pruned; the sweep goes on (its sweeper reports at the end)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.devices: str | None = None
        self.cpu = OtherWork()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.perf_counter()
        self.cpu.start()
        self.devices = os.environ.get("CUDA_VISIBLE_DEVICES")  # set per job by hydra.job.env_set
        if config.hydra.mode.name == "MULTIRUN":
            name_job(config)  # for the processes of its data-parallel ranks

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode.name != "MULTIRUN":
            return
        forget_job()
        import torch  # the job has imported it already
        from lightning.pytorch.utilities.rank_zero import rank_zero_only

        if rank_zero_only.rank != 0:  # a data-parallel job is recorded once, by its first process
            return
        excluded = list(config.hydra.job.config.override_dirname.exclude_keys)
        self.cpu.stop()
        cpu_s, others_cpu_s = self.cpu.seconds() or (None, None)
        record: dict[str, Any] = {
            "wall_s": round(time.perf_counter() - self.started, 3),
            "cpu_s": cpu_s,  # this job's CPU seconds ...
            "others_cpu_s": others_cpu_s,  # ... and those of other processes beside it: a busy machine
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
