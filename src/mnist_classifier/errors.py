"""The one failure policy of every entry point (train, eval, predict, export, serve, report).

Bad input (a value, a file, a checkpoint the user can fix) is refused before any work with one
line, `error: <what> is invalid: <what is allowed>`, and exit status 2. A failure during the work
itself is one line on stderr and exit status 1; its traceback goes to the run's log where there
is one. HYDRA_FULL_ERROR=1 shows the traceback instead, as Hydra does.
"""

import argparse
import atexit
import functools
import gc
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn, TypeVar

from hydra.errors import InstantiationException

BAD_INPUT_STATUS = 2
FAILURE_STATUS = 1
log = logging.getLogger(__name__)


class BadInput(ValueError):
    """Input the user can fix; the message names the value and what is allowed, on one line."""


def one_line(error: BaseException) -> str:
    """An error as one line: the message, else its type. Hydra's instantiate wraps the errors of
    the constructors it calls: those are shown as the constructor raised them."""
    if isinstance(error, InstantiationException) and error.__cause__ is not None:
        error = error.__cause__
    return " ".join(str(error).split()) or type(error).__name__


def first_line(error: BaseException) -> str:
    """The first line of an error's message (Hydra's messages go on with hints), else its type."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


@contextmanager
def reading_input() -> Iterator[None]:
    """Where the user's input (config, files, checkpoints) is read and built: BadInput raised there
    is bad input, also when Hydra's instantiate wraps it from a constructor it called. Any other
    error, a bug, goes on as a failure with its traceback."""
    try:
        yield
    except InstantiationException as error:
        if isinstance(error.__cause__, BadInput):
            raise error.__cause__ from error
        raise


def full_errors() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def refuse(error: BaseException) -> NoReturn:
    """Bad input: one line, exit status 2."""
    print(f"error: {one_line(error)}", file=sys.stderr)
    sys.exit(BAD_INPUT_STATUS)


def fail(error: BaseException) -> NoReturn:
    """A failure during the work: one line, the traceback in the log's files (a run's train.log), status 1."""
    trace = (type(error), error, error.__traceback__)
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "the failure", (), trace)
    for handler in logging.getLogger().handlers:  # the files only: the console gets the one line
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
    print(f"error: {one_line(error)}", file=sys.stderr)
    sys.exit(FAILURE_STATUS)


@contextmanager
def failure_policy(in_sweep: bool = False) -> Iterator[None]:
    """Errors inside the block become one line and an exit status: 2 for BadInput, 1 for anything
    else. In a sweep they are left to fail the job, and the sweep goes on (its report lists them)."""
    try:
        yield
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as error:
        if in_sweep or full_errors():
            raise
        if isinstance(error, BadInput):
            refuse(error)
        fail(error)


Main = TypeVar("Main", bound=Callable[..., int | None])


def entry_point(main: Main) -> Main:
    """A command's main function, run under the failure policy."""

    @functools.wraps(main)
    def guarded(*args, **kwargs):
        with failure_policy():
            return main(*args, **kwargs)

    return guarded  # type: ignore[return-value]


def exit_with(status: int | None) -> NoReturn:
    """End a command's process with its main's status, quickly: what the command made is freed with
    the process, so as the process ends it is frozen (gc.freeze) out of the interpreter's last garbage
    collections, which would walk every object torch and its exporters made (docs/benchmarks.md,
    "Start-up"). Frozen at the end, not here: a test that runs the command inside its own process
    (runpy) goes on collecting."""
    atexit.register(gc.freeze)
    sys.exit(status)


def existing_file(path: Path, what: str) -> Path:
    """The path when a file is there, else BadInput: the commands check their files before they
    import torch, so a mistyped path is refused at once."""
    if not path.is_file():
        raise BadInput(f"{path} is invalid: no such {what}")
    return path


def unwritable(folder: Path) -> str | None:
    """Why a folder cannot be made (a file in its way) or written, or None: checked before the work
    starts, so that its output is not lost at the end."""
    for there in (folder.absolute(), *folder.absolute().parents):
        if not there.exists():
            continue
        if not there.is_dir():
            return f"{there} is a file, not a folder"
        if not os.access(there, os.W_OK | os.X_OK):
            return f"{there} cannot be written"
        return None
    return None


def writable_folder(folder: Path, option: str) -> Path:
    """The folder, else BadInput naming the option (`--out DIR`) and why it cannot be made or written."""
    if why := unwritable(folder):
        raise BadInput(f"{option} is invalid: {why}; give a folder that can be made and written")
    return folder


class ArgumentParser(argparse.ArgumentParser):
    """argparse under the failure policy: a bad command line is one line and exit status 2, not
    argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        raise BadInput(f"{self.prog}: {message} (see {self.prog} --help)")
