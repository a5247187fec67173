"""A newcomer's first minutes: a fresh clone of the repository, the README's set-up command run in it
against the real MNIST, ending in a trained checkpoint and the summary the README describes."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT, real_mnist_dir, user_environment

SUMMARY = ("best val accuracy", "best epoch", "test accuracy", "checkpoint", "run dir", "dashboards")


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a virtual environment made and filled, then an epoch trained
def test_make_train_in_a_fresh_clone_sets_up_and_ends_in_a_checkpoint_and_its_summary(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    assert "make train" in (clone / "README.md").read_text()
    env = user_environment(real_mnist_dir())
    env.pop("VIRTUAL_ENV", None)  # as a new shell has it: no project venv active
    env["PATH"] = os.pathsep.join(part for part in env["PATH"].split(os.pathsep) if ".venv" not in part)
    result = subprocess.run(
        ["make", "train", "ARGS=trainer.max_epochs=1"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (clone / ".venv" / "installed").is_file()
    output = result.stdout + result.stderr
    summary = dict(re.findall(r"\[INFO\] - ([a-z ]+):\s+(.*)", output))
    assert tuple(name for name in summary if name in SUMMARY) == SUMMARY
    assert float(summary["test accuracy"]) >= 0.97  # one epoch of the default recipe on the real MNIST
    checkpoint = Path(summary["checkpoint"])
    assert checkpoint.is_file() and checkpoint.is_relative_to(clone / "outputs")
    assert summary["best epoch"] == "1 of 1"
