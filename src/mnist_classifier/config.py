"""The composed config of a command line, checked before anything is built.

`preflight(argv)` runs Hydra's composition for a command line and `validate`s it (every value
against its rule in mnist_classifier.schema, and what needs the file system or torch) before Hydra
makes a run dir, so that bad input costs one line and exit status 2, nothing else: the data from
its files' headers and labels, a checkpoint by its format, the run dir by the file system. Imports
no torch: a refused command answers fast. Only what the command line itself asks for imports more:
a GPU, or a checkpoint file to resume from, whose weights must fit the net (torch); a `_target_` it
sets or a key it adds to a built node (that node's module, Lightning's Trainer for `+trainer.X`).
What needs the run built (data downloaded as it starts) is checked as it is built.
"""

import copy
import hashlib
import inspect
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import fields
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

from mnist_classifier.checkpoint_files import different_weights
from mnist_classifier.datasets import DataSet, missing_files, not_there, raw_dir, training_split_size
from mnist_classifier.errors import BadInput, first_line, one_line, reading_input, unwritable
from mnist_classifier.overrides import (
    NOT_A_RUN,
    combinations,
    command_line_overrides,
    first_value,
    override_key,
    values_of,
)
from mnist_classifier.schema import LENET_MIN_IMAGE_SIZE, check, shown
from mnist_classifier.tracker_settings import check_loggers

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
NAME_LIMIT = 120  # characters of a run dir's name; file systems allow 255
LAST = "last"  # ckpt_path=last: resume the newest run with the same overrides
GPU_ACCELERATORS = ("gpu", "cuda")
LENET = "mnist_classifier.models.LeNet"


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
    that is not there or is no checkpoint, a device this machine lacks, or a logger that cannot start."""
    check(cfg)
    check_loggers(cfg)
    check_checkpoint(cfg.get("ckpt_path"))
    check_devices(cfg)


def validate_run(cfg: DictConfig) -> None:
    """validate, and what the net and the data need: found before the run, not as it is built."""
    validate(cfg)
    check_model(cfg)
    check_resumed_net(cfg)
    check_data(cfg)


def check_checkpoint(ckpt_path: str | None) -> None:
    if ckpt_path in (None, LAST):
        return
    if not Path(str(ckpt_path)).is_file():
        raise BadInput(f"ckpt_path={ckpt_path} is invalid: no such file; give a checkpoint file, or last")
    # torch.save, which Lightning's checkpoints are written with, writes a zip archive: its pickle
    # and tensors are read as the run starts, with the net they must fit.
    if not zipfile.is_zipfile(str(ckpt_path)):
        raise BadInput(
            f"ckpt_path={ckpt_path} is invalid: not a checkpoint (no zip archive, as torch.save writes); "
            "give a checkpoint file of train.py, or last"
        )


def check_devices(cfg: DictConfig) -> None:
    """A GPU asked for on a machine without one, or more of them than it has."""
    accelerator = OmegaConf.select(cfg, "trainer.accelerator")
    devices = OmegaConf.select(cfg, "trainer.devices")
    if accelerator == "mps":
        import torch  # only here: the other checks answer without it

        if not torch.backends.mps.is_available():
            raise BadInput(
                "trainer.accelerator=mps is invalid: this machine has no Apple GPU "
                "(torch.backends.mps.is_available() is False); use cpu or auto"
            )
    several = isinstance(devices, int) and devices > 1
    if accelerator not in GPU_ACCELERATORS and not (accelerator == "auto" and several):
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if accelerator in GPU_ACCELERATORS and not count:
        raise BadInput(
            f"trainer.accelerator={accelerator} is invalid: this machine has no CUDA GPU "
            "(torch.cuda.is_available() is False); use cpu or auto"
        )
    if count and isinstance(devices, int) and devices > count:
        raise BadInput(
            f"trainer.devices={devices} is invalid: this machine has {count} CUDA GPUs; give 1 to {count}, "
            "or -1 for every one"
        )


def check_model(cfg: DictConfig) -> None:
    """What LeNet cannot be built with (models.LeNet refuses it too, for a net built elsewhere)."""
    if OmegaConf.select(cfg, "model._target_") != LENET:
        return
    size, hidden = OmegaConf.select(cfg, "data.image_size"), OmegaConf.select(cfg, "model.hidden_sizes")
    if isinstance(size, int) and size < LENET_MIN_IMAGE_SIZE:
        raise BadInput(
            f"data.image_size={size} is invalid for LeNet: it needs at least {LENET_MIN_IMAGE_SIZE} "
            "(32 is the tutorial's size)"
        )
    if hidden is not None and len(hidden) != 2:
        raise BadInput(f"model.hidden_sizes={shown(list(hidden))} is invalid for LeNet: give exactly 2 sizes")


def check_resumed_net(cfg: DictConfig) -> None:
    """A checkpoint file to resume from holds weights of the names and shapes of the config's net.
    Reads it and builds the net (torch): only for a command line that gives a checkpoint file."""
    ckpt_path, model = cfg.get("ckpt_path"), cfg.get("model")
    if ckpt_path in (None, LAST) or not isinstance(model, DictConfig) or "_target_" not in model:
        return
    import torch
    from hydra.utils import instantiate

    check_target("model", model)
    try:
        checkpoint = torch.load(str(ckpt_path), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises a different type for each way a file is not one
        raise BadInput(
            f"ckpt_path={ckpt_path} is invalid: not a checkpoint (torch.load failed: {first_line(error)})"
        ) from error
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise BadInput(
            f"ckpt_path={ckpt_path} is invalid: not a Lightning checkpoint (it holds no state_dict)"
        )
    with reading_input():
        net = instantiate(model)
    # The classifier holds the net as `net`; its other state is compared as the run is built.
    ours = {f"net.{name}": list(tensor.shape) for name, tensor in net.state_dict().items()}
    theirs = {name: list(tensor.shape) for name, tensor in checkpoint["state_dict"].items()}
    if difference := different_weights(
        ours, {name: shape for name, shape in theirs.items() if name.startswith("net.")}
    ):
        raise BadInput(
            f"ckpt_path={ckpt_path} is invalid: it holds a different model than this config's: {difference}"
        )


def check_data(cfg: DictConfig) -> None:
    """The data set's files are there (or will be downloaded into a folder that can be written), and
    its training split holds more images than data.val_size cuts from it: from the files' headers
    and labels, without reading the images."""
    data = cfg.get("data")
    if not isinstance(data, DictConfig) or "dataset" not in data or data.get("data_dir") is None:
        return
    dataset = DataSet(**{field.name: data.dataset.get(field.name) for field in fields(DataSet)})
    data_dir = Path(str(data.data_dir))
    if missing := missing_files(data_dir, dataset):
        if not data.get("download"):
            raise not_there(data_dir, dataset, "download is off (data.download=false)", missing)
        if dataset.torchvision_class is None:
            reason = f"{dataset.name} names no torchvision class to download it with"
            raise not_there(data_dir, dataset, reason, missing)
        if why := unwritable(raw_dir(data_dir, dataset)):
            raise not_there(data_dir, dataset, f"it cannot be downloaded there: {why}", missing)
        return  # downloaded as the run starts; data.py checks it then
    count = training_split_size(data_dir, dataset)
    val_size = data.get("val_size")
    if isinstance(val_size, int) and val_size >= count:
        raise BadInput(
            f"data.val_size={val_size} is invalid: it must be smaller than the {count} training images"
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
    # A sweep's own config is checked for its values alone: its jobs' mixes, with the data and the
    # net they need, are checked below, since a swept value (data.val_size=40,50) replaces its own.
    if sweeping:
        validate(cfg)
    else:
        validate_run(cfg)
    check_touched_targets(cfg, parsed)
    check_output_dir(cfg, overrides, sweeping)
    if tune := cfg.hydra.runtime.choices.get("tune"):
        refuse_tuning(cfg, tune, sweeping)
    if not sweeping:
        if study := cfg.hydra.runtime.choices.get("hparams_search"):
            raise BadInput(
                f"hparams_search={study} is invalid without -m: a study runs its trials as a sweep, "
                f"python train.py -m hparams_search={study}"
            )
        check_resumable(cfg, overrides)
        return
    # The sweeper's own params (a study's search space) come first in each job; the command line wins.
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    searched = [*parser.parse_overrides([f"{key}={value}" for key, value in params.items()]), *parsed]
    job = [first_value(override) for override in searched]
    first = _composed(job, config_name)
    validate_run(first)
    if str(OmegaConf.select(cfg, "hydra.sweeper._target_")).endswith("GridSweeper"):
        combinations(parsed)  # refuses what a grid cannot sweep
    for override in (override for override in searched if override.is_sweep_override()):
        for value in values_of(override):
            if value != first_value(override):
                validate_run(_with_value(first, job, parser.parse_override(value), config_name))


def check_touched_targets(cfg: DictConfig, parsed: list[Override]) -> None:
    """check_target for each built node whose `_target_` the command line sets or to which it adds a
    key (`+trainer.X`): only those, since checking imports what the node names (Lightning, torch);
    the nodes of config files are checked as the run starts (check_targets)."""
    keys = [
        override.key_or_group
        for override in parsed
        if override.is_add() or override.is_force_add() or override.key_or_group.endswith("._target_")
    ]
    for key, node in targeted_nodes(cfg):
        if any(touched.startswith(f"{key}.") and "." not in touched[len(key) + 1 :] for touched in keys):
            check_target(key, node)


def check_output_dir(cfg: DictConfig, overrides: list[str], sweeping: bool) -> None:
    """The run dir (a sweep's dir with -m) can be made and written: Hydra makes it before the run."""
    key = "hydra.sweep.dir" if sweeping else "hydra.run.dir"
    folder = Path(str(OmegaConf.select(cfg, key)))
    if why := unwritable(folder):
        # The setting the user gave: the dir itself, else the folder it is made in; the last one wins.
        given = [line for line in overrides if override_key(line) == key]
        given = given or [line for line in overrides if override_key(line) == "paths.log_dir"]
        setting = given[-1] if given else f"{key}={folder}"
        raise BadInput(f"{setting} is invalid: {why}; give a folder that can be made and written")


def check_resumable(cfg: DictConfig, overrides: list[str]) -> None:
    """ckpt_path=last has a run to resume: the run dir's own checkpoint, or a run with the same
    overrides (mnist_classifier.resume; a sweep's jobs each resume their own, as they run)."""
    if cfg.get("ckpt_path") != LAST:
        return
    from mnist_classifier.resume import latest_checkpoint, own_checkpoint  # it imports this module

    if own_checkpoint(Path(str(cfg.hydra.run.dir))) is None:
        latest_checkpoint(Path(str(cfg.paths.log_dir)), overrides)


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
