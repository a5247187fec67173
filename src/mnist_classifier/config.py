"""The composed config: what each value may be, checked before anything is built.

`validate(cfg)` checks every key a user may set against its declared type and range (the table
`RULES`), and `preflight(argv)` runs Hydra's composition and these checks for a command line
before Hydra makes a run dir, so that bad input costs one line and exit status 2, nothing else.
Checks that need the data or the model (a validation split larger than the data, an image too
small for LeNet) are made where those are built. Imports no torch: a refused command answers fast.
"""

import hashlib
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from mnist_classifier.errors import BadInput
from mnist_classifier.overrides import combinations, override_key, values_of

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
NAME_LIMIT = 120  # characters of a run dir's name; file systems allow 255
LAST = "last"  # ckpt_path=last: resume the newest run with the same overrides
GPU_ACCELERATORS = ("gpu", "cuda")


@dataclass(frozen=True)
class Number:
    """An int or a float within bounds; `open_low`/`open_high` leave the bound itself out."""

    integer: bool = False
    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False
    also: tuple[Any, ...] = ()  # other accepted values, e.g. -1 for "no limit" or None
    note: str = ""

    def accepts(self, value: Any) -> bool:
        if any(value == other and type(value) is type(other) for other in self.also):
            return True
        kinds = (int,) if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            return False
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below

    @property
    def allowed(self) -> str:
        kind = "an integer" if self.integer else "a number"
        bound = (lambda value: str(int(value))) if self.integer else (lambda value: f"{value:g}")
        low = f"{'>' if self.open_low else '>='} {bound(self.low)}" if self.low > -math.inf else ""
        high = f"{'<' if self.open_high else '<='} {bound(self.high)}" if self.high < math.inf else ""
        text = f"{kind} {' and '.join(part for part in (low, high) if part)}".strip()
        return f"{text}{self.note}"


@dataclass(frozen=True)
class OneOf:
    choices: tuple[Any, ...]

    def accepts(self, value: Any) -> bool:
        return any(value == choice and type(value) is type(choice) for choice in self.choices)

    @property
    def allowed(self) -> str:
        return "one of " + ", ".join(shown(choice) for choice in self.choices)


@dataclass(frozen=True)
class Sizes:
    """A list of integer sizes >= 1."""

    def accepts(self, value: Any) -> bool:
        items = list(value) if isinstance(value, list | tuple | ListConfig) else None
        return bool(items) and all(Number(integer=True, low=1).accepts(item) for item in items)

    @property
    def allowed(self) -> str:
        return "a list of one or more integers >= 1, e.g. [120,84]"


Rule = Number | OneOf | Sizes
BOOL = OneOf((True, False))
COUNT = Number(integer=True, low=1)
SEED = Number(integer=True, low=0, high=2**32 - 1)
PROBABILITY = Number(low=0, high=1)
FRACTION_OR_COUNT = Number(low=0, note=" (a fraction up to 1.0, or a number of batches)")

RULES: dict[str, Rule] = {
    "seed": SEED,
    "data.dataset": OneOf(("mnist", "fashion_mnist")),
    "data.image_size": COUNT,
    "data.resize": OneOf(("bilinear", "pad")),
    "data.val_size": COUNT,
    "data.split_seed": SEED,
    "data.shuffle_seed": SEED,
    "data.batch_size": COUNT,
    "data.eval_batch_size": COUNT,
    "data.download": BOOL,
    "model.hidden_sizes": Sizes(),
    "optimizer.lr": Number(low=0, open_low=True),
    "optimizer.momentum": Number(low=0, high=1, open_high=True),
    "optimizer.weight_decay": Number(low=0),
    "optimizer.nesterov": BOOL,
    "loss.label_smoothing": Number(low=0, high=1, open_high=True),
    "scheduler.scheduler.step_size": COUNT,
    "scheduler.scheduler.gamma": Number(low=0, open_low=True),
    "scheduler.scheduler.T_max": COUNT,
    "scheduler.scheduler.pct_start": Number(low=0, high=1, open_low=True, open_high=True),
    "augment.rotation": Number(low=0, high=180, note=" (degrees either way)"),
    "augment.scale": Number(low=0, high=0.99, note=" (a fraction either way)"),
    "augment.translate": Number(low=0, high=1, note=" (a fraction of the image side)"),
    "augment.shear": Number(low=0, high=60, note=" (degrees either way)"),
    "augment.hflip": PROBABILITY,
    "augment.elastic": Number(low=0, note=" (pixels; 0 turns it off)"),
    "augment.elastic_cells": Number(integer=True, low=2, high=64),
    "augment.p": PROBABILITY,
    "classifier.channels_last": BOOL,
    "classifier.compile": BOOL,
    "trainer.accelerator": OneOf(("auto", "cpu", "gpu", "cuda", "mps")),
    "trainer.devices": Number(integer=True, low=1, also=("auto", -1), note=", -1 (all) or auto"),
    "trainer.num_nodes": COUNT,
    "trainer.precision": OneOf(
        ("32-true", "32", 32, "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "64", 64)
    ),
    "trainer.max_epochs": Number(integer=True, low=1, also=(-1,), note=", or -1 for no limit"),
    "trainer.log_every_n_steps": COUNT,
    "trainer.deterministic": OneOf((True, False, "warn")),
    "trainer.accumulate_grad_batches": COUNT,
    "trainer.gradient_clip_val": Number(low=0, also=(None,)),
    "trainer.limit_train_batches": FRACTION_OR_COUNT,
    "trainer.limit_val_batches": FRACTION_OR_COUNT,
    "trainer.limit_test_batches": FRACTION_OR_COUNT,
    "trainer.overfit_batches": FRACTION_OR_COUNT,
    "trainer.fast_dev_run": Number(integer=True, low=0, also=(True, False)),
    "callbacks.last_checkpoint.every_n_train_steps": Number(integer=True, low=1, also=(None,)),
    "callbacks.early_stopping.patience": COUNT,
    "callbacks.ema.decay": Number(low=0, high=1, open_low=True, open_high=True),
    "callbacks.misclassified_digits.count": Number(integer=True, low=0),
    "callbacks.parameter_histograms.every_n_steps": Number(integer=True, low=0, note=" (0: off)"),
    "hydra.sweeper.n_trials": COUNT,
    "hydra.sweeper.n_jobs": COUNT,
    "hydra.sweeper.heartbeat_interval": Number(
        integer=True, low=1, also=(None,), note=", or null: no heartbeats"
    ),
    "hydra.sweeper.grace_period": Number(
        integer=True, low=1, also=(None,), note=", or null: twice the interval"
    ),
    "hydra.sweeper.max_retry": Number(integer=True, low=0),
    "hydra.launcher.n_jobs": COUNT,
}


def short_name(name: str) -> str:
    """A run dir's name within NAME_LIMIT: a longer one (a study's many overrides) is cut, and a hash
    of the whole keeps it unique; .hydra/overrides.yaml holds them all. Registered as the resolver
    `${short:...}`, which conf/hydra names sweep jobs' dirs with."""
    if len(name) <= NAME_LIMIT:
        return name
    return f"{name[: NAME_LIMIT - 9]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


OmegaConf.register_new_resolver("short", short_name, replace=True)


def shown(value: Any) -> str:
    """A value as the user wrote it on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, ListConfig | list | tuple):
        return "[" + ",".join(shown(item) for item in value) + "]"
    return str(value)


def check(key: str, value: Any, rule: Rule) -> None:
    if not rule.accepts(value):
        raise BadInput(f"{key}={shown(value)} is invalid: {rule.allowed}")


def validate(cfg: DictConfig) -> None:
    """Raise BadInput for the first value outside its rule, naming the key and what is allowed."""
    for key, rule in RULES.items():
        node_value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
        if node_value is not _ABSENT:
            check(key, node_value, rule)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path not in (None, LAST) and not Path(str(ckpt_path)).is_file():
        raise BadInput(f"ckpt_path={ckpt_path} is invalid: no such file; give a checkpoint file, or last")
    if OmegaConf.select(cfg, "classifier.compile") and OmegaConf.select(cfg, "logger.tensorboard.log_graph"):
        raise BadInput(
            "logger.tensorboard.log_graph=true is invalid with classifier.compile=true: the graph is traced, "
            "and tracing cannot enter a compiled net"
        )
    accelerator = OmegaConf.select(cfg, "trainer.accelerator")
    if accelerator in GPU_ACCELERATORS:
        import torch  # only here: the other checks answer without it

        if not torch.cuda.is_available():
            raise BadInput(
                f"trainer.accelerator={accelerator} is invalid: this machine has no CUDA GPU "
                "(torch.cuda.is_available() is False); use cpu or auto"
            )


_ABSENT = object()


def compose(overrides: Iterable[str], output_dir: str | Path, config_name: str = "train") -> DictConfig:
    """The config a command would get for these overrides, with Hydra's runtime set (so that
    `${hydra:...}` resolves) and its output dir pointed at `output_dir`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name, overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = os.getcwd()
    HydraConfig.instance().set_config(cfg)
    return cfg


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


def preflight(argv: list[str], config_name: str = "train") -> None:
    """Compose the config of a command line and validate it, raising BadInput before Hydra starts
    the run. In a sweep, every swept value is checked (an interval at both ends)."""
    flags, overrides = command_line_overrides(argv)
    if flags & NOT_A_RUN:
        return
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
    except HydraException as error:
        raise BadInput(_first_line(error)) from error
    sweeping = bool(flags & {"-m", "--multirun"})
    if not sweeping and (
        sweep := next((override for override in parsed if override.is_sweep_override()), None)
    ):
        raise BadInput(
            f"{sweep.input_line} is invalid without -m: a list is written [a,b]; a sweep over the values "
            "needs -m (python train.py -m ...)"
        )
    # A sweep's config is composed without its swept values, as Hydra composes it for the sweeper.
    cfg = _composed(
        [override.input_line for override in parsed if not override.is_sweep_override()], config_name
    )
    validate(cfg)
    if not sweeping:
        if study := cfg.hydra.runtime.choices.get("hparams_search"):
            raise BadInput(
                f"hparams_search={study} is invalid without -m: a study runs its trials as a sweep, "
                f"python train.py -m hparams_search={study}"
            )
        return
    # The sweeper's own params (a study's search space) come first in each job; the command line wins.
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    searched = [*parser.parse_overrides([f"{key}={value}" for key, value in params.items()]), *parsed]
    job = [_first_value(override) for override in searched]
    validate(_composed(job, config_name))
    if str(OmegaConf.select(cfg, "hydra.sweeper._target_")).endswith("GridSweeper"):
        combinations(parsed)  # refuses what a grid cannot sweep
    for override in (override for override in searched if override.is_sweep_override()):
        for value in values_of(override):
            if value != _first_value(override):
                probe = [line for line in job if override_key(line) != override.key_or_group]
                validate(_composed([*probe, value], config_name))


def _composed(overrides: list[str], config_name: str) -> DictConfig:
    try:
        return compose(overrides, output_dir=os.getcwd(), config_name=config_name)
    except MissingConfigException as error:
        group = error.missing_cfg_file.rsplit("/", 1)[0]
        line = next((line for line in overrides if override_key(line) == group), None)
        if line is None or not error.options:
            raise BadInput(_first_line(error)) from error
        raise BadInput(f"{line} is invalid: choose one of {', '.join(error.options)}") from error
    except (ConfigCompositionException, HydraException, OmegaConfBaseException) as error:
        raise BadInput(_unknown_key(error, overrides) or _first_line(error)) from error


def _unknown_key(error: Exception, overrides: list[str]) -> str | None:
    """`key=value is invalid: ...` for an override of a key the config does not have."""
    message = str(error)
    if not message.startswith("Could not override '"):
        return None
    key = message.split("'")[1]
    line = next(line for line in overrides if override_key(line) == key)
    parent, _, name = key.rpartition(".")
    return f"{line} is invalid: {parent or 'the config'} has no key {name!r} (+{line} adds one)"


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _first_value(override: Override) -> str:
    """The override as one value: itself, or a sweep's first value (an interval's start)."""
    values = values_of(override) if override.is_sweep_override() else []
    return values[0] if values else override.input_line


def hyperparameters(cfg: DictConfig, choices: dict[str, str | None]) -> dict[str, Any]:
    """What TensorBoard's HParams tab shows for a run: the group choices and their values."""
    hparams: dict[str, Any] = {"seed": cfg.seed}
    for group in ("model", "optimizer", "loss", "scheduler", "augment", "data"):
        hparams[group] = choices.get(group)
        node = cfg.get(group)
        values = OmegaConf.to_container(node, resolve=True) if node is not None else {}
        hparams.update({f"{group}.{key}": value for key, value in _flat(values).items()})
    hparams["trainer.max_epochs"] = cfg.trainer.get("max_epochs")
    return hparams


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b": value}, leaving out Hydra's `_target_`-style keys and paths."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key.startswith("_") or key == "data_dir":
            continue
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value) if isinstance(value, list) else value
    return flat
