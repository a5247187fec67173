"""Shared fixtures: a tiny MNIST written as real IDX files, the composed Hydra config, and one
trained run (with its checkpoints) that every test needing one reuses."""

import functools
import importlib.util
import io
import logging
import os
import random
import runpy
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mnist_classifier.config import compose
from mnist_classifier.datasets import FILES, DataSet, find_file, read_split

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
TINY_TRAIN, TINY_TEST = 120, 40
# A run of a few steps on the tiny data: 80 training images in batches of 16, 40 validated.
TINY_RUN = ["data.val_size=40", "data.batch_size=16", "trainer.max_epochs=2", "trainer.log_every_n_steps=1"]

# The files whose tests take longest, started first (make test runs with --no-loadscope-reorder, a
# file to a worker at a time): the short files then fill in, and the workers end together.
LONGEST_FIRST = ("test_sweeps.py", "test_train.py", "test_readme.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file's tests keep their order


# In-process tests share the machine with the processes that other tests start: one thread each.
torch.set_num_threads(1)


@contextmanager
def process_state_kept() -> Iterator[None]:
    """What an in-process run changes, put back when the block ends: the environment (PL_GLOBAL_SEED,
    the sweep job's name), the loggers' handlers (those it added closed) and levels, the random
    generators, torch's threads and deterministic mode (trainer.deterministic), the working
    directory and the command line."""
    # Imported here, not with the module: xdist's controller loads this file and runs no test, and
    # need not wait for Lightning. The loggers are those in-process runs change (Hydra's job logging,
    # quiet_libraries).
    from mnist_classifier.training import QUIET_LOGGERS

    environ, cwd, argv = dict(os.environ), os.getcwd(), list(sys.argv)
    names = ("", "lightning", "lightning.pytorch", "mnist_classifier", *QUIET_LOGGERS)
    loggers = {name: logging.getLogger(name) for name in names}
    handlers = {name: (list(logger.handlers), logger.level) for name, logger in loggers.items()}
    generators = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    threads = torch.get_num_threads()
    deterministic = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(cwd)
        sys.argv[:] = argv
        for name, logger in loggers.items():
            saved, level = handlers[name]
            for added in set(logger.handlers) - set(saved):
                added.close()  # Hydra's train.log, say
            logger.handlers[:] = saved
            logger.setLevel(level)
        random.setstate(generators[0])
        np.random.set_state(generators[1])
        torch.set_rng_state(generators[2])
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn


@pytest.fixture(autouse=True)
def restored_state() -> Iterator[None]:
    """The process as it was before each test (process_state_kept), so that no test sees another's."""
    with process_state_kept():
        yield


def run_in_process(argv: list[str], folder: Path) -> None:
    """`python ARGV` in this process (runpy runs the script, or the module of `-m`, as `__main__`
    with these arguments), from `folder`: only the start of a Python process with torch is left out.
    Fails unless it ends with status 0."""
    os.chdir(folder)
    GlobalHydra.instance().clear()
    try:
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = argv
            runpy.run_path(argv[0], run_name="__main__")
        status = 0
    except SystemExit as stop:
        status = stop.code
    finally:
        GlobalHydra.instance().clear()
    assert status in (0, None), f"{' '.join(argv)} ended with status {status}"


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


def write_tiny_dataset(raw: Path) -> None:
    """The four IDX files of a tiny data set: 120 training and 40 test images."""
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count, seed in (("train", TINY_TRAIN, 0), ("t10k", TINY_TEST, 1)):
        images, labels = synthetic_digits(count, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)


def copy_dataset(source: Path, data_dir: Path) -> Path:
    """A writable copy of a data dir's MNIST/raw/ files (tests that damage files use one)."""
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES:
        shutil.copy(source / "MNIST" / "raw" / name, raw / name)
    return data_dir


# Coverage's setting for the processes a test starts (`patch = ["subprocess"]` puts it in the
# environment), taken out at the start of the session: see unmeasured_children.
CHILD_COVERAGE = "COVERAGE_PROCESS_CONFIG"
measured_children_config: dict[str, str] = {}


@pytest.fixture(scope="session", autouse=True)
def unmeasured_children() -> None:
    """The processes the tests start run outside coverage unless a test asks for it
    (user_environment(..., measured=True)): Python 3.11's tracer slows every Python call of a
    measured process, imports included, and most of what those processes run is covered in process.
    The tests that are a module's only runner (serve.py's server, the launchers) measure theirs.
    Session-scoped, so that it comes before the module fixtures that start workers and servers."""
    if CHILD_COVERAGE in os.environ:
        measured_children_config[CHILD_COVERAGE] = os.environ.pop(CHILD_COVERAGE)


def user_environment(data_dir: Path, measured: bool = False) -> dict[str, str]:
    """The environment of a command run as a user would: MNIST (and Fashion-MNIST) from data_dir,
    no GPU (so the run is the same on every machine), one torch thread (tests run side by side),
    and errors printed as users see them (no HYDRA_FULL_ERROR); measured by coverage if `measured`."""
    env = os.environ | {
        "MNIST_DATA_DIR": str(data_dir),
        "FASHION_MNIST_DATA_DIR": str(data_dir),
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("HYDRA_FULL_ERROR", None)
    return env | (measured_children_config if measured else {})


def wait_for(
    condition: Callable[[], object],
    *running: subprocess.Popen,
    what: str = "",
    timeout: float = 300,
    poll_s: float = 0.1,
) -> None:
    """Poll `condition` until it holds; fail at the deadline, or at once when one of the `running`
    processes, which the condition waits on, has ended."""
    deadline = time.monotonic() + timeout
    while not condition():
        ended = [process for process in running if process.poll() is not None]
        assert not ended, (
            f"{ended[0].args} exited with {ended[0].returncode} before {what or 'the condition'}"
        )
        assert time.monotonic() < deadline, f"timed out waiting for {what or 'the condition'}"
        time.sleep(poll_s)


def run_script(
    script: str, *args: str, data_dir: Path, cwd: Path = ROOT, timeout: float = 600, measured: bool = False
) -> subprocess.CompletedProcess:
    """One of the project's scripts (train.py, eval.py, ...) run as a user runs it, from `cwd`."""
    command = [sys.executable, str(ROOT / script), *args]
    env = user_environment(data_dir, measured)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def script_module(script: str) -> ModuleType:
    """An entry point (eval.py, predict.py, ...) imported as a module, to call its main in-process."""
    spec = importlib.util.spec_from_file_location(f"script_{Path(script).stem}", ROOT / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding MNIST/raw/ and FashionMNIST/raw/, each with 120 training and 40 test
    images in the four IDX files."""
    data_dir = tmp_path_factory.mktemp("tiny_mnist")
    write_tiny_dataset(data_dir / "MNIST" / "raw")
    write_tiny_dataset(data_dir / "FashionMNIST" / "raw")
    return data_dir


@pytest.fixture(scope="session")
def mnist_test() -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST's real test digits and labels, from $MNIST_DATA_DIR (make test sets it)."""
    images, labels = read_split(real_mnist_dir(), data_set("mnist"), train=False)
    return images, labels


@functools.cache
def data_set(name: str) -> DataSet:
    """The data set conf/data/<name>.yaml declares, as the data module gets it."""
    declared = compose([f"data={name}"], output_dir=ROOT).data.dataset
    GlobalHydra.instance().clear()
    return instantiate(declared)


def real_mnist_dir() -> Path:
    """Where the real MNIST is: $MNIST_DATA_DIR/MNIST/raw/ (make test points it at the shared copy)."""
    data_dir = Path(os.environ.get("MNIST_DATA_DIR", ROOT / "data"))
    missing = [name for name in FILES if find_file(data_dir / "MNIST" / "raw", name) is None]
    assert not missing, f"the real MNIST is not in {data_dir}/MNIST/raw: set MNIST_DATA_DIR (make test does)"
    return data_dir


@pytest.fixture
def compose_config(tmp_path: Path, tiny_mnist: Path) -> Iterator[Callable[..., DictConfig]]:
    """compose_config(*overrides) -> the config train.py would get on the tiny data, with Hydra's
    runtime set and its run dir in tmp_path/run."""

    def compose_with(*overrides: str) -> DictConfig:
        return compose([f"data.data_dir={tiny_mnist}", *overrides], output_dir=tmp_path / "run")

    yield compose_with
    GlobalHydra.instance().clear()


@dataclass
class TrainedRun:
    run_dir: Path
    output: str  # what train.py printed

    @property
    def best(self) -> Path:
        (checkpoint,) = (self.run_dir / "checkpoints").glob("epoch*.ckpt")
        return checkpoint

    @property
    def config(self) -> DictConfig:
        """The run's composed config, as Hydra saved it."""
        return OmegaConf.load(self.run_dir / ".hydra" / "config.yaml")

    @property
    def last(self) -> Path:
        return self.run_dir / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def trained_run(tiny_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """One train.py run of two epochs on the tiny data, with a user's environment, run in this
    process (run_in_process) so that it need not import Lightning again; shared by every test that
    reads a run dir or needs a checkpoint. Tests must not change its files. Its output lacks what
    pytest holds back in-process (warnings): test_train's noise test runs train.py in a process.
    On the CPU, as a user's run in user_environment: torch here may have seen a GPU already."""
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    argv = [str(ROOT / "train.py"), *TINY_RUN, "trainer.accelerator=cpu", f"hydra.run.dir={run_dir}"]
    printed = io.StringIO()
    try:
        with process_state_kept(), redirect_stdout(printed), redirect_stderr(printed):
            os.environ.clear()
            os.environ.update(user_environment(tiny_mnist))
            run_in_process(argv, run_dir.parent)
    except AssertionError as failure:
        raise AssertionError(f"{failure}; it printed:\n{printed.getvalue()}") from failure
    return TrainedRun(run_dir, printed.getvalue())
