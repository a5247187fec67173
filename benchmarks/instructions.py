"""Instruction counts of pieces of work in a Python process, by valgrind's callgrind: a measure of a
step's cost that, unlike a clock, does not depend on what else the machine runs.

A benchmark re-runs itself with `run_counted`; in the counted process an `InstructionCounter`
stands in for its clock. Callgrind is started with `--dump-before=getppid`: each `os.getppid()`
call makes it write the instructions executed since the call before to a file of their own, and
the counter calls it before and after a piece of work. The counted process has one thread
(OMP_NUM_THREADS=1): a thread pool's waiting threads spin, and their spinning would be counted too.
Callgrind runs a program many times slower than the CPU does (docs/benchmarks.md, "In instructions").
"""

import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

PARTS = "CALLGRIND_PARTS"  # set in the counted process: the folder callgrind writes its parts to


def counting() -> bool:
    """Whether this process is one that `run_counted` started."""
    return PARTS in os.environ


def run_counted(command: list[str]) -> int:
    """Runs `command` under callgrind, one thread, so that its `InstructionCounter` counts; its exit
    status."""
    with tempfile.TemporaryDirectory() as parts:
        callgrind = ["valgrind", "--tool=callgrind", "--quiet", "--dump-before=getppid"]
        callgrind.append(f"--callgrind-out-file={parts}/part")
        env = {**os.environ, PARTS: parts, "OMP_NUM_THREADS": "1"}
        return subprocess.run(callgrind + command, env=env).returncode


class InstructionCounter:
    """Called with a piece of work, runs it and gives the instructions it executed."""

    def __init__(self) -> None:
        if not counting():
            raise RuntimeError("an InstructionCounter counts only in a process that run_counted started")
        self.parts = Path(os.environ[PARTS])
        self.dumps = 0

    def __call__(self, work: Callable[[], object]) -> int:
        os.getppid()  # callgrind writes what ran before, the last count's reading too: left out
        work()
        os.getppid()  # callgrind writes the work's instructions
        self.dumps += 2
        before, counted = (self.parts / f"part.{self.dumps + offset}" for offset in (-1, 0))
        if not counted.exists() or (self.parts / f"part.{self.dumps + 1}").exists():
            raise RuntimeError("something else called getppid: callgrind's parts no longer match the counts")
        totals = [line for line in counted.read_text().splitlines() if line.startswith("totals:")]
        before.unlink()  # a part lists every function's count: megabytes
        counted.unlink()
        return int(totals[0].split()[1])
