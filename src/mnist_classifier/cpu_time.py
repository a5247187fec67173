"""CPU seconds spent while a block of work ran: this process's, and those of the other processes
beside it, which make a timing slower (a shared machine, a test suite). Each sweep job's job.json
keeps both (mnist_classifier.records), as do the benchmarks' timings (benchmarks/)."""

import os
import resource


def cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds the machine has been busy since it started, CPU seconds of this process and its
    children), from Linux's /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            user, nice, system, _, _, irq, softirq = (int(field) for field in stat.readline().split()[1:8])
    except (OSError, ValueError):
        return None
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    mine = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK"), mine


class OtherWork:
    """The CPU seconds this process spent, and those other processes spent beside it, while the block
    ran: a timing taken beside other work is the slower for it (a shared machine, a test suite)."""

    def __init__(self) -> None:
        self.started: tuple[float, float] | None = None
        self.stopped: tuple[float, float] | None = None

    def start(self) -> None:
        self.started, self.stopped = cpu_seconds(), None

    def stop(self) -> None:
        self.stopped = cpu_seconds()

    def __enter__(self) -> "OtherWork":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def seconds(self) -> tuple[float, float] | None:
        """(this process's CPU seconds, the other processes'), or None where they cannot be read."""
        if self.started is None or self.stopped is None:
            return None
        mine = self.stopped[1] - self.started[1]
        return round(mine, 3), round(max(0.0, self.stopped[0] - self.started[0] - mine), 3)
