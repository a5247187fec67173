"""Hydra's override lines (`key=value`, `key=a,b`, `key=interval(a,b)`): their keys and values."""

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
