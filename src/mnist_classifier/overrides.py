"""Hydra's override lines (`key=value`, `key=a,b`, `key=interval(a,b)`) and command-line flags:
their keys, the values a sweep gives each key, and a grid's combinations. Imports no torch."""

import itertools

from hydra.core.override_parser.types import IntervalSweep, Override
from hydra.errors import HydraException

from mnist_classifier.errors import BadInput


def override_key(line: str) -> str:
    """The key of an override line, without Hydra's +, ++ and ~ prefixes."""
    return line.split("=", 1)[0].lstrip("+~")


def values_of(override: Override) -> list[str]:
    """The override lines of each value an override may give its key: itself if it sweeps nothing,
    a list's or a range's values, an interval's two ends; none for glob(...), which lists config
    files that only Hydra's sweepers expand."""
    if not override.is_sweep_override():
        return [override.input_line]
    key = override.get_key_element()
    sweep = override.value()
    if isinstance(sweep, IntervalSweep):
        ends = (int(sweep.start), int(sweep.end)) if "int" in sweep.tags else (sweep.start, sweep.end)
        return [f"{key}={end}" for end in ends]
    try:
        return [f"{key}={value}" for value in override.sweep_string_iterator()]
    except HydraException:
        return []


def combinations(overrides: list[Override]) -> list[list[str]]:
    """A grid's jobs: one list of override lines per combination of the swept values."""
    choices: dict[str, list[str]] = {}
    for override in overrides:
        if override.is_sweep_override() and not override.is_discrete_sweep():
            raise BadInput(
                f"{override.input_line} is invalid: a grid sweeps lists, choice(...) and range(...); "
                "intervals need hparams_search=optuna"
            )
        key = override.get_key_element()
        if override.is_sweep_override():
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*choices.values())]


# Hydra's command-line flags: those that take a value, and those after which Hydra prints or
# does something else than a run (help, the config, shell completion), which it checks itself.
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn"}
FLAGS_WITH_VALUE |= {"--config-dir", "-cd", "--experimental-rerun", "--shell-completion", "-sc", "--info"}
NOT_A_RUN = FLAGS_WITH_VALUE - {"--package", "-p"} | {"--help", "-h", "--hydra-help", "--version"}


def command_line_overrides(argv: list[str]) -> tuple[set[str], list[str]]:
    """(Hydra's flags, the overrides) of a command line."""
    flags, overrides = set(), []
    arguments = iter(argv)
    for argument in arguments:
        if argument.startswith("-"):
            flags.add(argument.split("=", 1)[0])
            if argument in FLAGS_WITH_VALUE and "=" not in argument:
                next(arguments, None)
        else:
            overrides.append(argument)
    return flags, overrides


def first_value(override: Override) -> str:
    """The override as one value: itself, or a sweep's first value (an interval's start)."""
    values = values_of(override) if override.is_sweep_override() else []
    return values[0] if values else override.input_line
