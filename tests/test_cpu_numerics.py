"""The CPU kernels' instruction set: left to the libraries unless MNIST_CPU_KERNELS=avx2 holds them to
AVX2; torch.compile's cache kept apart for each setting; what environment.json records."""

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mnist_classifier.cpu_numerics import CPU_NUMERICS, INDUCTOR_CACHE, SWITCH, cpu_isa, pin_cpu_numerics
from mnist_classifier.errors import BadInput
from mnist_classifier.records import environment

from .conftest import user_environment

ROOT = Path(__file__).resolve().parents[1]
VARIABLES = (SWITCH, *CPU_NUMERICS, INDUCTOR_CACHE)
# What MNIST_CPU_KERNELS=avx2 must set, written out: ATen's, oneDNN's and MKL's own spellings.
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}


def pinned(monkeypatch: pytest.MonkeyPatch, **environment: str) -> dict[str, str | None]:
    """The kernels' variables after pin_cpu_numerics, from an environment holding only `environment`."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    pin_cpu_numerics()
    return {name: os.environ.get(name) for name in VARIABLES}


def test_the_kernels_are_left_to_the_libraries_unless_avx2_is_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    native = pinned(monkeypatch)
    assert {name: native[name] for name in AVX2} == dict.fromkeys(AVX2)
    assert pinned(monkeypatch, MNIST_CPU_KERNELS="native")[INDUCTOR_CACHE] == native[INDUCTOR_CACHE]
    held = pinned(monkeypatch, MNIST_CPU_KERNELS="avx2")
    assert {name: held[name] for name in AVX2} == AVX2
    # a variable set by the user wins over the switch
    mixed = pinned(monkeypatch, MNIST_CPU_KERNELS="avx2", ONEDNN_MAX_CPU_ISA="ALL")
    assert mixed["ONEDNN_MAX_CPU_ISA"] == "ALL" and mixed["ATEN_CPU_CAPABILITY"] == "avx2"


def test_an_unknown_setting_is_refused_naming_what_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BadInput, match=r"^MNIST_CPU_KERNELS=avx512 is invalid: give native or avx2$"):
        pinned(monkeypatch, MNIST_CPU_KERNELS="avx512")


def test_each_setting_of_the_cpu_kernels_gets_its_own_compile_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    native = pinned(monkeypatch)[INDUCTOR_CACHE]
    assert native == pinned(monkeypatch)[INDUCTOR_CACHE] and native.startswith(tempfile.gettempdir())
    assert pinned(monkeypatch, MNIST_CPU_KERNELS="avx2")[INDUCTOR_CACHE] != native
    assert pinned(monkeypatch, ATEN_CPU_CAPABILITY="default")[INDUCTOR_CACHE] != native
    assert pinned(monkeypatch, ONEDNN_MAX_CPU_ISA="ALL")[INDUCTOR_CACHE] != native
    assert pinned(monkeypatch, TORCHINDUCTOR_CACHE_DIR="/srv/cache")[INDUCTOR_CACHE] == "/srv/cache"


def cpu_flags() -> set[str]:
    """The CPU's flags, read here apart from cpu_numerics.cpu_isa."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {
        flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":")[1].split()
    }


def test_environment_json_records_the_setting_and_what_the_cpu_offers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SWITCH, "avx2")
    record = environment()
    assert record["cpu_numerics"] == {SWITCH: "avx2"} | {name: os.environ.get(name) for name in AVX2}
    assert set(record["cpu_isa"]) == cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_tile"}
    assert record["cpu_isa"] == cpu_isa()


def aten_capability(flags: set[str]) -> str:
    """The widest of ATen's CPU kernels that a CPU with these flags runs (ATen's own test, written
    out: AVX512 wants the foundation, byte/word, vector-length and doubleword/quadword sets)."""
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "AVX512"
    return "AVX2" if {"avx2", "fma"} <= flags else "DEFAULT"


@pytest.mark.slow
@pytest.mark.skipif(not {"avx2", "fma"} <= cpu_flags(), reason="needs an x86-64 CPU with AVX2")
@pytest.mark.parametrize("setting", ["native", "avx2"])
def test_torch_takes_the_kernels_of_the_setting(setting: str) -> None:
    """As train.py does: the setting applied, then torch imported, in a fresh process."""
    env = {name: value for name, value in os.environ.items() if name not in VARIABLES} | {SWITCH: setting}
    code = (
        "from mnist_classifier.cpu_numerics import pin_cpu_numerics; pin_cpu_numerics(); import torch;"
        "print(torch.backends.cpu.get_cpu_capability())"
    )
    taken = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert taken.stdout.strip() == (aten_capability(cpu_flags()) if setting == "native" else "AVX2")


@pytest.mark.slow
def test_train_refuses_an_unknown_setting_in_one_line_before_it_starts(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if name not in VARIABLES} | {SWITCH: "avx3"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={tmp_path / 'run'}"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr == "error: MNIST_CPU_KERNELS=avx3 is invalid: give native or avx2\n"
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.skipif(not {"avx2", "fma"} <= cpu_flags(), reason="needs an x86-64 CPU with AVX2")
def test_the_kernels_benchmark_times_each_setting_in_a_process_of_its_own_kernels(tiny_mnist: Path) -> None:
    """benchmarks/cpu_kernels.py on the tiny data: each setting's process takes its own kernels. (Its
    --bitwise mode trains whole runs: docs/benchmarks.md has its figures, test_train two runs of a seed.)"""
    env = {name: value for name, value in user_environment(tiny_mnist).items() if name not in VARIABLES}
    tiny = ["--", "data.val_size=40", "data.batch_size=16"]
    speed = [sys.executable, "benchmarks/cpu_kernels.py", "--threads", "1", "--rounds", "2", "--steps", "2"]
    result = subprocess.run(
        [*speed, "--warm-up", "1", *tiny], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert f"native: ATen {aten_capability(cpu_flags())}, 1 threads" in result.stdout
    assert "avx2: ATen AVX2, 1 threads" in result.stdout
    assert re.search(r"over 2 pairs of 2 steps: median \d+\.\d{3}", result.stdout)
