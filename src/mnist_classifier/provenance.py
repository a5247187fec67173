"""What reproduces a run, recorded in its run dir beside Hydra's config and overrides."""

import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

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
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "git": git_state(Path(__file__).parent),
    }


class RunRecord(Callback):
    """Hydra callback: writes environment.json into each run's .hydra/ dir as the run starts."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.output_subdir is None:  # no .hydra/ dir: a data-parallel run's other ranks
            return
        hydra_dir = Path(config.hydra.runtime.output_dir, config.hydra.output_subdir)
        hydra_dir.mkdir(parents=True, exist_ok=True)
        (hydra_dir / ENVIRONMENT_FILE).write_text(json.dumps(environment(), indent=2))
