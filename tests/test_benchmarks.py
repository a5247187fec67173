"""The benchmark scripts run: a tiny budget on the tiny IDX data, figures checked for shape only."""

import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, user_environment


def test_throughput_benchmark_prints_a_row_per_path_with_the_ratios(tiny_mnist: Path) -> None:
    env = user_environment(tiny_mnist)
    command = [sys.executable, "benchmarks/throughput.py", "--models", "lenet", "--batch-sizes", "16"]
    command += ["--epochs", "2", "--limit-batches", "2", "--", "data.val_size=40"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| lenet")]
    assert [row[2].strip() for row in rows] == ["lightning", "hand", "tutorial"]
    for row in rows:
        assert float(row[3]) > 0 and float(row[4].replace(",", "")) > 0  # s/epoch, images/s
    lightning = rows[0]
    assert float(lightning[5]) > 0 and float(lightning[6]) > 0  # the two ratios
