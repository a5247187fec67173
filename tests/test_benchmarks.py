"""The benchmark scripts on a tiny budget: the throughput table must agree with the timings it
measured; the instruction counter counts what a piece of work executes; the handwriting benchmark's
images are made by its seed and its table counts them."""

import importlib.util
import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnist_classifier.mnist_format import mnist_digit
from mnist_classifier.written_numbers import mnist_digits_of_number

from .conftest import ROOT, user_environment
from .drawings import encoded, nearest


@pytest.mark.slow
def test_throughput_benchmark_summarises_its_paired_timings(tiny_mnist: Path) -> None:
    command = [sys.executable, "benchmarks/throughput.py", "--models", "lenet", "--batch-sizes", "16"]
    command += ["--paths", "lightning", "hand", "--epochs", "3", "--limit-batches", "2"]
    command += ["--augment", "affine"]
    command += ["--", "data.val_size=40"]
    result = subprocess.run(
        command, cwd=ROOT, env=user_environment(tiny_mnist), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    rows = {row[2].strip(): row for row in (line.split("|")[1:-1] for line in result.stdout.splitlines())
            if row and row[0].strip() == "lenet"}  # fmt: skip
    assert list(rows) == ["lightning", "hand", "hand+affine"]
    (timings,) = [json.loads(line) for line in result.stderr.strip().splitlines() if line.startswith("{")]
    seconds = timings["seconds"]
    for path, row in rows.items():  # the median epoch after the first, and 2 batches of 16 in it
        epoch = statistics.median(seconds[path][1:])
        assert float(row[3]) == pytest.approx(epoch, abs=0.005)
        assert float(row[4].replace(",", "")) == pytest.approx(32 / epoch, rel=0.01)

    def paired(top: str, bottom: str) -> float:
        return statistics.median(a / b for a, b in zip(seconds[top][1:], seconds[bottom][1:], strict=True))

    assert float(rows["lightning"][5]) == pytest.approx(paired("hand", "lightning"), abs=0.005)
    assert float(rows["hand+affine"][7].strip().rstrip("%")) == pytest.approx(
        100 * (paired("hand+affine", "hand") - 1), abs=0.05
    )


COUNTED = """
import os
from instructions import InstructionCounter

def spin(n):
    for _ in range(n):
        pass

counter = InstructionCounter()
print(counter(lambda: spin(100_000)), counter(lambda: spin(200_000)), counter(lambda: None))
counter(os.getppid)  # a getppid call of the work's own
"""


def test_the_instruction_counter_counts_what_a_piece_of_work_executes(tmp_path: Path) -> None:
    (tmp_path / "counted.py").write_text(textwrap.dedent(COUNTED))
    runner = "import sys; from instructions import run_counted; sys.exit(run_counted(sys.argv[1:]))"
    result = subprocess.run(
        [sys.executable, "-c", runner, sys.executable, str(tmp_path / "counted.py")],
        env={**user_environment(tmp_path), "PYTHONPATH": str(ROOT / "benchmarks")},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    short, long, nothing = (int(count) for count in result.stdout.split())
    assert nothing < 10_000  # the marks alone: not the reading of the count before
    loop = short - nothing  # 100,000 turns of the loop
    assert 100_000 < loop < 100_000 * 1_000
    assert long - nothing == pytest.approx(2 * loop, rel=0.01)
    assert result.returncode != 0 and "something else called getppid" in result.stderr
    with pytest.raises(RuntimeError, match="only in a process that run_counted started"):
        benchmark_module("instructions.py").InstructionCounter()


def benchmark_module(script: str):
    """A benchmark script, imported as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(script.removesuffix(".py"), ROOT / "benchmarks" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_wild_digits_are_made_by_the_seed_and_read_back(mnist_test: tuple[torch.Tensor, ...]) -> None:
    wild = benchmark_module("wild_digits.py")
    digits = mnist_test[0][:4]
    for condition in wild.CONDITIONS:
        first = wild.wild_digit(digits[0], condition, np.random.default_rng(1))
        again = wild.wild_digit(digits[0], condition, np.random.default_rng(1))
        assert np.array_equal(np.asarray(first), np.asarray(again))
        assert first.size[0] >= (28 if condition == "mnist" else 4 * 20)
    templates = [mnist_digit(encoded(Image.fromarray(digit.numpy()))) for digit in digits]
    number = wild.wild_number(list(digits), np.random.default_rng(0))
    assert [nearest(digit, templates) for digit in mnist_digits_of_number(number)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="condition='sketch' is invalid"):
        wild.wild_digit(digits[0], "sketch", np.random.default_rng(0))


def test_the_benchmark_table_counts_each_condition(mnist_test: tuple[torch.Tensor, ...]) -> None:
    wild = benchmark_module("wild_digits.py")

    def always_seven(digits: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.full((len(digits),), 7), 10).float()

    results = wild.accuracies(always_seven, *mnist_test, count=4, seed=0)
    assert {name: count for name, (count, _) in results.items()}["numbers"] == 1
    assert [count for name, (count, _) in results.items() if name in wild.CONDITIONS] == [4, 4, 4]
    chosen = mnist_test[1][np.random.default_rng(0).permutation(len(mnist_test[1]))[:4]]
    assert results["reference"] == (4, (chosen == 7).float().mean().item())  # the digits as they are
    lines = wild.table(results).splitlines()
    assert lines[0] == "| condition | images | accuracy |" and len(lines) == 2 + len(results)


@pytest.mark.parametrize(
    ("script", "argv", "message"),
    [
        ("throughput.py", ["--models", "vgg"], "--models vgg is invalid: give lenet or mlp"),
        (
            "throughput.py",
            ["--batch-sizes", "0"],
            "--batch-sizes 0 is invalid: give a batch size of 1 or more",
        ),
        ("throughput.py", ["--epochs", "51"], "--epochs 51 is invalid: give 2 to 50 (the first warms up)"),
        ("step_cost.py", ["--models", "vgg"], "--models vgg is invalid: give lenet or mlp"),
        (
            "step_cost.py",
            ["--short", "9", "--long", "9"],
            "--short 9 --long 9 is invalid: give 1 <= short < long",
        ),
        (
            "step_cost.py",
            ["--rows", "13"],
            "--rows 13 is invalid: give row numbers 0 to 12",
        ),
        (
            "callback_cost.py",
            ["--short", "60", "--long", "10"],
            "--short 60 --long 10 is invalid: give 1 <= short < long",
        ),
        (
            "step_cost.py",
            ["--instructions", "--device", "cuda"],
            "--device cuda is invalid with --instructions: give cpu (callgrind counts a CPU's)",
        ),
    ],
)
def test_a_benchmark_refuses_what_it_cannot_measure_in_one_line(
    script: str, argv: list[str], message: str, monkeypatch, capsys
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the scripts import their hand loop
    with pytest.raises(SystemExit) as stop:
        benchmark_module(script).main(argv)
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]
