"""The composed config of a command line, checked before anything is built.

`preflight(argv)` runs Hydra's composition for a command line and `validate`s it (every value
against its rule in mnist_classifier.schema, and what needs the file system or torch) before Hydra
makes a run dir, so that bad input costs one line and exit status 2, nothing else. Checks that
need the data or the model (a validation split larger than the data, an image too small for
LeNet, a `_target_` that cannot be imported) are made where those are built. Imports no torch: a
refused command answers fast.
"""

import copy
import hashlib
import inspect
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from mnist_classifier.errors import BadInput, first_line, one_line
from mnist_classifier.overrides import (
    NOT_A_RUN,
    combinations,
    command_line_overrides,
    first_value,
    override_key,
    values_of,
)
from mnist_classifier.schema import check, shown
from mnist_classifier.tracker_settings import check_loggers

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
NAME_LIMIT = 120  # characters of a run dir's name; file systems allow 255
LAST = "last"  # ckpt_path=last: resume the newest run with the same overrides
GPU_ACCELERATORS = ("gpu", "cuda")


def short_name(name: str) -> str:
    """A run dir's name within NAME_LIMIT: a longer one (a study's many overrides) is cut, and a hash
    of the whole keeps it unique; .hydra/overrides.yaml holds them all. Registered as the resolver
    `${short:...}`, which conf/hydra names sweep jobs' dirs with."""
    if len(name) <= NAME_LIMIT:
        return name
    return f"{name[: NAME_LIMIT - 9]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


OmegaConf.register_new_resolver("short", short_name, replace=True)
# `${len:${data.dataset.classes}}`: the number of classes follows from the data set's classes.
OmegaConf.register_new_resolver("len", len, replace=True)


def validate(cfg: DictConfig) -> None:
    """Raise BadInput for the first value outside its rule (mnist_classifier.schema), a checkpoint
    that is not there, a GPU asked for on a machine without one, or a logger that cannot start."""
    check(cfg)
    check_loggers(cfg)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path not in (None, LAST) and not Path(str(ckpt_path)).is_file():
        raise BadInput(f"ckpt_path={ckpt_path} is invalid: no such file; give a checkpoint file, or last")
    accelerator = OmegaConf.select(cfg, "trainer.accelerator")
    if accelerator in GPU_ACCELERATORS:
        import torch  # only here: the other checks answer without it

        if not torch.cuda.is_available():
            raise BadInput(
                f"trainer.accelerator={accelerator} is invalid: this machine has no CUDA GPU "
                "(torch.cuda.is_available() is False); use cpu or auto"
            )


def targeted_nodes(node: DictConfig | ListConfig, key: str = "") -> Iterator[tuple[str, DictConfig]]:
    """Each node of the run's config that Hydra's instantiate builds (it has a `_target_`), with its
    key; Hydra's own settings aside."""
    items = node.items() if isinstance(node, DictConfig) else enumerate(node)
    for name, value in items:
        if isinstance(value, DictConfig | ListConfig) and name != "hydra":
            path = f"{key}.{name}" if key else str(name)
            if isinstance(value, DictConfig) and "_target_" in value:
                yield path, value
            yield from targeted_nodes(value, path)


def check_targets(cfg: DictConfig) -> None:
    """Raise BadInput for a `_target_` that cannot be imported or a key it takes no argument for.
    Imports what the run builds (torch, Lightning): called as the run starts, not before, so that a
    refusal of a value answers at once and the libraries start under the run's logging."""
    for key, node in targeted_nodes(cfg):
        check_target(key, node)


def check_target(key: str, node: DictConfig) -> None:
    """BadInput unless the node's `_target_` can be imported and takes each of its keys."""
    target = node._target_
    try:
        built = get_object(target)
    except Exception as error:  # an import runs the module's code: anything can fail
        raise BadInput(
            f"{key}._target_={target} is invalid: it cannot be imported ({one_line(error)}); give a "
            "class or function on the Python path (PYTHONPATH)"
        ) from error
    try:
        parameters = inspect.signature(built).parameters
    except (TypeError, ValueError):  # a builtin without a signature: its call says
        return
    if any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters.values()):
        return
    if unknown := [name for name in node if not name.startswith("_") and name not in parameters]:
        raise BadInput(
            f"{key}.{unknown[0]} is invalid: {target} takes no argument {unknown[0]}; it takes "
            f"{', '.join(parameters) or 'none'}"
        )


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
        raise BadInput(first_line(error)) from error
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
    if tune := cfg.hydra.runtime.choices.get("tune"):
        refuse_tuning(cfg, tune, sweeping)
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
    job = [first_value(override) for override in searched]
    first = _composed(job, config_name)
    validate(first)
    if str(OmegaConf.select(cfg, "hydra.sweeper._target_")).endswith("GridSweeper"):
        combinations(parsed)  # refuses what a grid cannot sweep
    for override in (override for override in searched if override.is_sweep_override()):
        for value in values_of(override):
            if value != first_value(override):
                validate(_with_value(first, job, parser.parse_override(value), config_name))


# The Trainer's arguments that spread a run over devices, with what they are when not given.
ONE_DEVICE = {"strategy": "auto", "devices": "auto", "num_nodes": 1}


def refuse_tuning(cfg: DictConfig, tune: str, sweeping: bool) -> None:
    """BadInput where Lightning's range test cannot run: it is one run in one process on one device,
    from the config's fresh weights, and Lightning skips it in a fast_dev_run."""
    trainer = cfg.trainer
    strategy, devices, nodes = (trainer.get(key, default) for key, default in ONE_DEVICE.items())
    fast_dev_run, ckpt_path = trainer.get("fast_dev_run"), cfg.get("ckpt_path")
    one_device = "Lightning's range test runs in one process on one device"
    refusals = [
        (sweeping, "-m", "the range test is one run; run it once without -m"),
        (
            strategy not in ("auto", "single_device"),
            f"trainer.strategy={shown(strategy)}",
            f"{one_device}; use trainer=default",
        ),
        (devices not in (1, "auto"), f"trainer.devices={shown(devices)}", f"{one_device}; give 1"),
        (nodes != 1, f"trainer.num_nodes={shown(nodes)}", f"{one_device}; give 1"),
        (
            bool(fast_dev_run),
            f"trainer.fast_dev_run={shown(fast_dev_run)}",
            "Lightning skips the range test in a fast_dev_run; drop debug=fast",
        ),
        (
            ckpt_path is not None,
            f"ckpt_path={ckpt_path}",
            "the range test starts from the config's fresh weights; drop ckpt_path",
        ),
    ]
    for refused, setting, why in refusals:
        if refused:
            raise BadInput(f"tune={tune} is invalid with {setting}: {why}")


def _with_value(first: DictConfig, job: list[str], value: Override, config_name: str) -> DictConfig:
    """The first job's config with one other swept value: set in place where it is a value of a key
    the config has; composed anew where it picks a group's option (another file) or adds a key."""
    key = value.key_or_group
    if key in first.hydra.runtime.choices or value.is_add() or OmegaConf.select(first, key) is None:
        probe = [line for line in job if override_key(line) != key]
        return _composed([*probe, value.input_line], config_name)
    probed = copy.deepcopy(first)
    OmegaConf.update(probed, key, value.value(), merge=False)
    return probed


def _composed(overrides: list[str], config_name: str) -> DictConfig:
    try:
        return compose(overrides, output_dir=os.getcwd(), config_name=config_name)
    except MissingConfigException as error:
        group = error.missing_cfg_file.rsplit("/", 1)[0]
        line = next((line for line in overrides if override_key(line) == group), None)
        if line is None or not error.options:
            raise BadInput(first_line(error)) from error
        raise BadInput(f"{line} is invalid: choose one of {', '.join(error.options)}") from error
    except (ConfigCompositionException, HydraException, OmegaConfBaseException) as error:
        raise BadInput(_unknown_key(error, overrides) or first_line(error)) from error


def _unknown_key(error: Exception, overrides: list[str]) -> str | None:
    """`key=value is invalid: ...` for an override of a key the config does not have."""
    message = str(error)
    if not message.startswith("Could not override '"):
        return None
    key = message.split("'")[1]
    line = next(line for line in overrides if override_key(line) == key)
    parent, _, name = key.rpartition(".")
    return f"{line} is invalid: {parent or 'the config'} has no key {name!r} (+{line} adds one)"
