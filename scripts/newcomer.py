"""A newcomer's first minutes, checked: a fresh clone of this repository's last commit, the README's
set-up command (`make train`) run in it as a new shell runs it, ending in a trained checkpoint and
the summary the README shows, with the accuracy one epoch of the default recipe reaches.

Standard library only: `make test` runs it with the system Python beside the making of its own
virtual environment, which needs no more than one core. Prints one line; exits 1 on a failure, with
the end of what `make train` printed."""

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = ("best val accuracy", "best epoch", "test accuracy", "checkpoint", "run dir", "dashboards")
LEAST_ACCURACY = 0.97  # one epoch of the default recipe on the real MNIST
TIMEOUT_S = 1200  # a virtual environment made and filled, then an epoch trained


def newcomer_environment() -> dict[str, str]:
    """This shell's environment as a new shell has it: no project venv active; no GPU and one torch
    thread, so that the run is the same on every machine and leaves the other core to make test."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(part for part in env["PATH"].split(os.pathsep) if ".venv" not in part)
    return env


def problems(clone: Path, output: str) -> list[str]:
    """What is wrong with a finished `make train` in `clone`, given what it printed."""
    found = []
    if not (clone / ".venv" / "installed").is_file():
        found.append("no .venv/installed")
    summary = dict(re.findall(r"\[INFO\] - ([a-z ]+):\s+(.*)", output))
    names = tuple(name for name in summary if name in SUMMARY)
    if names != SUMMARY:
        return [*found, f"the summary lines are {names}, not {SUMMARY}"]
    if float(summary["test accuracy"]) < LEAST_ACCURACY:
        found.append(f"test accuracy {summary['test accuracy']} < {LEAST_ACCURACY}")
    checkpoint = Path(summary["checkpoint"])
    if not (checkpoint.is_file() and checkpoint.is_relative_to(clone / "outputs")):
        found.append(f"checkpoint {checkpoint} is not a file in {clone / 'outputs'}")
    if summary["best epoch"] != "1 of 1":
        found.append(f"best epoch is {summary['best epoch']!r}, not '1 of 1'")
    return found


def main() -> int:
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="newcomer-") as folder:
        clone = Path(folder) / "clone"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
        if "make train" not in (clone / "README.md").read_text():
            print("newcomer: failed: the README does not say `make train`", file=sys.stderr)
            return 1
        result = subprocess.run(
            ["make", "train", "ARGS=trainer.max_epochs=1"],
            cwd=clone, env=newcomer_environment(), capture_output=True, text=True, timeout=TIMEOUT_S,
        )  # fmt: skip
        output = result.stdout + result.stderr
        if result.returncode:
            found = [f"make train exited with {result.returncode}"]
        else:
            found = problems(clone, output)
    if found:
        print(f"newcomer: failed: {'; '.join(found)}\n{output[-3000:]}", file=sys.stderr)
        return 1
    took = time.monotonic() - start
    print(f"newcomer: make train in a fresh clone set up, trained and summarised in {took:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
