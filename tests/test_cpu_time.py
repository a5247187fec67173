"""The CPU seconds of this process, and of the other processes beside it, while a block ran."""

import time

import pytest

from mnist_classifier import cpu_time
from mnist_classifier.cpu_time import OtherWork


def test_a_block_of_work_is_counted_as_this_processs_cpu_seconds_once_it_stops() -> None:
    work = OtherWork()
    assert work.seconds() is None
    with work:
        assert work.seconds() is None  # not stopped yet
        busy_until = time.process_time() + 0.05
        while time.process_time() < busy_until:
            pass
    mine, others = work.seconds()
    assert mine >= 0.04 and others >= 0.0


def test_without_the_machines_cpu_seconds_there_are_none(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_proc_stat(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("/proc/stat")  # not Linux

    monkeypatch.setattr(cpu_time, "open", no_proc_stat, raising=False)
    assert cpu_time.cpu_seconds() is None
    with OtherWork() as work:
        pass
    assert work.seconds() is None
