"""What each run records in its dir: `.hydra/environment.json` (what reproduces it, beside Hydra's
config and overrides), and for each job of a sweep `job.json` (its outcome), which the sweep report
reads (mnist_classifier.report). Both are written by Hydra callbacks (conf/hydra/default.yaml).

A sweep job also names itself in its process's environment while it runs, so that the processes
Lightning starts for the other ranks of a data-parallel job (which run the sweep's command line
again) can run that same job instead of a new sweep (`relaunched_job`).
"""

import getpass
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mnist_classifier.config import override_key
from mnist_classifier.errors import one_line

# The instruction set the CPU kernels of ATen, oneDNN and MKL may use. Left to choose, each takes the
# widest the CPU has (AVX-512, AMX) and sums in another order on a machine that has other ones, so
# the same seed trains to other figures. AVX2 is on every x86-64 CPU of the last decade; on a CPU
# with AMX it costs LeNet's convolutions some speed (docs/benchmarks.md). A variable set in the
# environment wins: ONEDNN_MAX_CPU_ISA=ALL trades the portable figures for that speed.
CPU_NUMERICS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
INDUCTOR_CACHE = "TORCHINDUCTOR_CACHE_DIR"
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


def pin_cpu_numerics() -> None:
    """Hold the CPU kernels to CPU_NUMERICS, unless the environment says otherwise; before torch is
    imported, as the libraries read the variables once. torch.compile's kernels are cached in a
    folder of each setting's own (unless TORCHINDUCTOR_CACHE_DIR is set): its cache does not tell
    them apart, and a kernel cached under AVX-512 computes garbage under ATEN_CPU_CAPABILITY=avx2."""
    for name, value in CPU_NUMERICS.items():
        os.environ.setdefault(name, value)
    setting = "-".join(os.environ[name] for name in CPU_NUMERICS)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this user id, as in some containers
        user = str(os.getuid())
    default_cache = Path(tempfile.gettempdir()) / f"torchinductor_{user}_{setting}"
    os.environ.setdefault(INDUCTOR_CACHE, str(default_cache))


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
        "cpu_numerics": {name: os.environ.get(name) for name in CPU_NUMERICS},
        "cpu_kernels": torch.backends.cpu.get_cpu_capability(),  # not cpu_numerics' if set after torch loaded
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
JOB_ENV = "MNIST_CLASSIFIER_SWEEP_JOB"  # the running job, inherited by the processes it starts
UNFINISHED = {"status": "unfinished", "error": "no record: the job was killed or is still running"}


def named_overrides(lines: list[str], excluded: list[str]) -> dict[str, str]:
    """A job's overrides as its run dir's name shows them: without the keys Hydra leaves out of the
    name (paths, and what the sweeper adds itself, e.g. the Optuna trial number)."""
    return {override_key(line): line.split("=", 1)[1] for line in lines if override_key(line) not in excluded}


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The record a job left in its run dir; None if it left none (killed, or still running)."""
    path = run_dir / JOB_RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds the machine has been busy since it started, CPU seconds of this process and its
    children), from Linux's /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            user, nice, system, _, _, irq, softirq = (int(field) for field in stat.readline().split()[1:8])
    except (OSError, ValueError):
        return None
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    mine = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK"), mine


class OtherWork:
    """The CPU seconds this process spent, and those other processes spent beside it, while the block
    ran: a timing taken beside other work is the slower for it (a shared machine, a test suite)."""

    def __init__(self) -> None:
        self.started: tuple[float, float] | None = None
        self.stopped: tuple[float, float] | None = None

    def start(self) -> None:
        self.started, self.stopped = cpu_seconds(), None

    def stop(self) -> None:
        self.stopped = cpu_seconds()

    def __enter__(self) -> "OtherWork":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def seconds(self) -> tuple[float, float] | None:
        """(this process's CPU seconds, the other processes'), or None where they cannot be read."""
        if self.started is None or self.stopped is None:
            return None
        mine = self.stopped[1] - self.started[1]
        return round(mine, 3), round(max(0.0, self.stopped[0] - self.started[0] - mine), 3)


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


def relaunched_job() -> dict[str, Any] | None:
    """The sweep job this process is a rank of: set when a job's process started this one (Lightning
    re-runs the command line for each data-parallel rank); None in a sweep's own process."""
    job = json.loads(os.environ.get(JOB_ENV, "null"))
    return job if job is not None and job["pid"] != os.getpid() else None


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
