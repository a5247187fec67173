"""The benchmark script on a tiny budget: its table must agree with the timings it measured."""

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, user_environment


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
