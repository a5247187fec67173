"""Shared fixtures: a tiny MNIST written as real IDX files, and the composed Hydra config."""

import os
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
TINY_TRAIN, TINY_TEST = 120, 40


def write_idx(path: Path, array: torch.Tensor) -> None:
    """Write a uint8 tensor in the IDX format: magic (0, 0, 0x08 = ubyte, ndim), sizes, data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.dim()) + struct.pack(f">{array.dim()}I", *array.shape)
    path.write_bytes(header + array.to(torch.uint8).numpy().tobytes())


def synthetic_digits(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable 28x28 images: class k is a bright bar at row 2 + 2k, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 10
    labels = labels[torch.randperm(count, generator=generator)]
    images = torch.randint(0, 60, (count, 28, 28), generator=generator)
    for index, label in enumerate(labels.tolist()):
        images[index, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
    return images.to(torch.uint8), labels.to(torch.uint8)


def user_environment(data_dir: Path) -> dict[str, str]:
    """The environment of a command run as a user would: MNIST from data_dir, no GPU (so the run is
    the same on every machine), and errors printed as users see them (no HYDRA_FULL_ERROR)."""
    env = os.environ | {"MNIST_DATA_DIR": str(data_dir), "CUDA_VISIBLE_DEVICES": ""}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run_script(script: str, *args: str, data_dir: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """One of the project's scripts (train.py, eval.py, ...) run as a user runs it, from `cwd`."""
    command = [sys.executable, str(ROOT / script), *args]
    return subprocess.run(
        command, cwd=cwd, env=user_environment(data_dir), capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding MNIST/raw/ with 120 training and 40 test images in the four IDX files."""
    data_dir = tmp_path_factory.mktemp("tiny_mnist")
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, count, seed in (("train", TINY_TRAIN, 0), ("t10k", TINY_TEST, 1)):
        images, labels = synthetic_digits(count, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return data_dir


@pytest.fixture
def compose_config(tmp_path: Path) -> Iterator[Callable[..., DictConfig]]:
    """compose_config(*overrides) -> the config train.py would get, with Hydra's runtime set."""

    def compose_with(*overrides: str) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path / "run")
            cfg.hydra.runtime.cwd = os.getcwd()
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield compose_with
    GlobalHydra.instance().clear()
