"""The failure policy every entry point runs under, and how a command's process ends."""

import subprocess
import sys

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from mnist_classifier.errors import ArgumentParser, BadInput, entry_point, failure_policy, reading_input


def test_bad_input_is_one_line_with_status_2_and_other_errors_status_1(capsys) -> None:
    with pytest.raises(SystemExit) as stop, failure_policy():
        raise BadInput("x=1 is invalid: it must be 2\nand no second line")
    assert stop.value.code == 2
    assert capsys.readouterr().err == "error: x=1 is invalid: it must be 2 and no second line\n"
    with pytest.raises(SystemExit) as stop, failure_policy():
        raise RuntimeError("the disk is full")
    assert stop.value.code == 1
    assert capsys.readouterr().err == "error: the disk is full\n"


def test_only_bad_input_is_bad_input_also_from_a_constructor_hydra_called() -> None:
    with pytest.raises(BadInput, match="image_size=8 is invalid for LeNet"), reading_input():
        instantiate({"_target_": "mnist_classifier.models.LeNet", "image_size": 8})
    # A bug in a constructor is a failure, even a ValueError: it is not the user's to fix.
    with pytest.raises(InstantiationException) as raised, reading_input():
        instantiate({"_target_": "builtins.int", "_args_": ["not a number"]})
    assert isinstance(raised.value.__cause__, ValueError)
    with pytest.raises(KeyError), reading_input():
        raise KeyError("a bug, not bad input")


def test_a_sweep_job_and_hydra_full_error_get_the_exception_itself(monkeypatch) -> None:
    with pytest.raises(BadInput), failure_policy(in_sweep=True):  # the job fails, the sweep goes on
        raise BadInput("x=1 is invalid")
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(RuntimeError), failure_policy():
        raise RuntimeError("with its traceback")


def test_a_bad_command_line_is_one_line_not_argparses_usage_block(capsys) -> None:
    @entry_point
    def main(argv: list[str]) -> int:
        parser = ArgumentParser(prog="tool.py")
        parser.add_argument("count", type=int)
        parser.parse_args(argv)
        return 0

    assert main(["3"]) == 0
    with pytest.raises(SystemExit) as stop:
        main(["three"])
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        "error: tool.py: argument count: invalid int value: 'three' (see tool.py --help)\n"
    )


# The probe is registered before exit_with's handler, so it runs after it: atexit runs the last first.
ENDING = """
import atexit, gc, sys
from mnist_classifier.errors import exit_with

atexit.register(lambda: print("frozen" if gc.get_freeze_count() else "not frozen"))
exit_with(int(sys.argv[1]))
"""


@pytest.mark.slow  # a process of its own, as a command's
def test_a_command_ends_with_its_status_and_its_objects_frozen_out_of_the_last_collection() -> None:
    for status in (0, 2):
        ended = subprocess.run(
            [sys.executable, "-c", ENDING, str(status)], capture_output=True, text=True, timeout=60
        )
        assert (ended.returncode, ended.stdout) == (status, "frozen\n"), ended.stderr
