"""What each config value may be: its type, range and meaning, declared once, as pydantic models of
the composed config (conf/ holds the values, this module what is allowed).

`check(cfg)` validates the keys of a composed config that these models declare and raises BadInput
for the first one outside its rule, with a message made from the rule itself:
`optimizer.lr=-1 is invalid: a number > 0 (the learning rate; onecycle's peak)`. A key that a
composition lacks (an optimizer without momentum) is not checked; keys these models do not declare
are Hydra's to refuse (an unknown key) or the constructors' (a Trainer argument added with +).
Imports no torch: a refused command answers fast.
"""

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from omegaconf import DictConfig, ListConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from mnist_classifier.errors import BadInput
from mnist_classifier.selection import EPOCH_METRICS, Mode

MIN_PAD_SIZE = 28  # data.resize=pad puts the 28x28 image inside the bigger one
# Two 5x5 valid convolutions, each followed by a 2x2 max-pool, leave at least one pixel only from
# 16x16 inputs on; the tutorial's 32x32 gives the 5x5 maps that flatten to 400 features.
LENET_MIN_IMAGE_SIZE = 16


def rule(annotation: Any, description: str = "", **bounds: float) -> Any:
    """A type with its bounds (ge, gt, le, lt) and what it means, for a field of a section."""
    return Annotated[annotation, Field(description=description, **bounds)]


Count = rule(int, ge=1)
Seed = rule(int, ge=0, le=2**32 - 1)
Probability = rule(float, ge=0, le=1)
BatchesLimit = rule(float, "a fraction up to 1.0, or a number of batches", ge=0)


class Section(BaseModel):
    """A part of the config. Values are checked strictly (1.5 is no integer, 1 no boolean), and a
    declared key may be absent (each field defaults to None, which is never validated)."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class DataSet(Section):
    """A data set's declaration: every field is required (`...`)."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)  # its _target_
    name: rule(str, "the data set's name, as checkpoints and messages give it") = ...
    folder: rule(str, "the folder under data_dir whose raw/ holds the four IDX files") = ...
    classes: rule(list[str], "the class names, label k is the k-th", min_length=2) = ...
    variable: rule(str, "the environment variable naming the data dir") = ...
    torchvision_class: rule(str | None, "the torchvision.datasets class that downloads it") = ...


class Data(Section):
    dataset: DataSet = None
    mean: rule(float | None, "null: the training images' mean") = None
    std: rule(float | None, "null: the training images' standard deviation", gt=0) = None
    image_size: rule(int, "the side of the images the net sees", ge=1) = None
    resize: rule(Literal["bilinear", "pad"], "pad: zero borders around the 28x28 image") = None
    val_size: rule(int, "images cut from the training split to validate on", ge=1) = None
    split_seed: Seed = None
    shuffle_seed: Seed = None
    batch_size: Count = None
    eval_batch_size: Count = None
    download: bool = None

    @model_validator(mode="after")
    def padding_fits(self) -> "Data":
        if self.resize == "pad" and self.image_size is not None and self.image_size < MIN_PAD_SIZE:
            refuse(f"data.image_size={self.image_size} is invalid with data.resize=pad: it must be >= 28")
        return self


class Model(Section):
    hidden_sizes: rule(list[Count], "the widths of the hidden layers, e.g. [120,84]", min_length=1) = None


class Optimizer(Section):
    lr: rule(float, "the learning rate; with scheduler=onecycle, its peak", gt=0) = None
    momentum: rule(float, ge=0, lt=1) = None
    weight_decay: rule(float, ge=0) = None
    nesterov: bool = None
    fused: bool | None = None  # null: torch picks its step


class Loss(Section):
    label_smoothing: rule(float, ge=0, lt=1) = None


class SchedulerFactory(Section):
    step_size: rule(int, "epochs between steps", ge=1) = None
    gamma: rule(float, "the rate's factor at each step", gt=0) = None
    T_max: rule(int, "epochs of the cosine's half period", ge=1) = None
    pct_start: rule(float, "the share of the steps that warm up", gt=0, lt=1) = None


class Scheduler(Section):
    scheduler: SchedulerFactory = None


class Augment(Section):
    rotation: rule(float, "degrees either way", ge=0, le=180) = None
    scale: rule(float, "a fraction either way", ge=0, le=0.99) = None
    translate: rule(float, "a fraction of the image side", ge=0, le=1) = None
    shear: rule(float, "degrees either way", ge=0, le=60) = None
    hflip: rule(float, "the probability of a mirror image", ge=0, le=1) = None
    elastic: rule(float, "pixels; 0 turns it off", ge=0) = None
    elastic_cells: rule(int, "control points per side", ge=2, le=64) = None
    p: rule(float, "the share of images distorted", ge=0, le=1) = None


class Selection(Section):
    monitor: rule(Literal[tuple(EPOCH_METRICS)], "the metric that picks the best epoch") = None
    mode: rule(Mode, "whether its best is its highest or lowest value") = None


class Classifier(Section):
    channels_last: bool = None
    compile: bool = None


class Trainer(Section):
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = None
    # Lightning takes more strategies (fsdp, deepspeed, ...): the data module shards batches as DDP does.
    strategy: rule(Literal["auto", "ddp"], "ddp: a process per device, as trainer=ddp sets") = None
    devices: rule(Count | Literal["auto", -1], "-1: every device") = None
    num_nodes: Count = None
    # Lightning takes 16-true, bf16-true and 64-true too, but converts no batch for them: the data
    # module hands float32 images to the net, whose weights would be of another type.
    precision: rule(
        Literal["32-true", "32", 32, "16-mixed", "bf16-mixed"],
        "16-true, bf16-true and 64-true cannot train here: the images stay float32",
    ) = None
    max_epochs: rule(Count | Literal[-1], "-1: no limit") = None
    log_every_n_steps: Count = None
    deterministic: bool | Literal["warn"] = None
    accumulate_grad_batches: Count = None
    gradient_clip_val: rule(float | None, "null: no clipping", ge=0) = None
    limit_train_batches: BatchesLimit = None
    limit_val_batches: BatchesLimit = None
    limit_test_batches: BatchesLimit = None
    overfit_batches: BatchesLimit = None
    fast_dev_run: bool | rule(int, "batches of each stage", ge=0) = None


class LastCheckpoint(Section):
    every_n_train_steps: rule(Count | None, "null: every epoch") = None


class EarlyStopping(Section):
    patience: rule(int, "validations without improvement", ge=1) = None


class Ema(Section):
    decay: rule(float, "the weight of the average so far at each update", gt=0, lt=1) = None
    start_epoch: rule(int, "the first epoch averaged, from 0", ge=0) = None


class Dashboards(Section):
    misclassified_digits: rule(int, "digits shown, 0: off", ge=0) = None
    training_inputs: rule(int, "images shown, 0: off", ge=0) = None
    histograms_every_n_steps: rule(int, "0: off", ge=0) = None


class Callbacks(Section):
    last_checkpoint: LastCheckpoint | None = None
    early_stopping: EarlyStopping | None = None
    ema: Ema | None = None
    dashboards: Dashboards | None = None


class TensorBoard(Section):
    log_graph: bool = None


class Logger(Section):
    tensorboard: TensorBoard | None = None


class Tune(Section):
    """tune=lr_find: Lightning's learning-rate range test (Tuner.lr_find)."""

    min_lr: rule(float, "the rate of the first step", gt=0) = None
    max_lr: rule(float, "the rate of the last step", gt=0) = None
    # Lightning's suggestion skips the first 10 steps and the last: at 20, ten points are left to judge.
    num_training: rule(int, "steps, each at a higher rate", ge=20) = None
    mode: rule(Literal["exponential", "linear"], "how the rate grows from step to step") = None
    early_stop_threshold: rule(
        float | None, "stop once the smoothed loss passes this multiple of its lowest; null: never", gt=1
    ) = None

    @model_validator(mode="after")
    def rates_rise(self) -> "Tune":
        if self.min_lr is not None and self.max_lr is not None and self.max_lr <= self.min_lr:
            refuse(
                f"tune.max_lr={shown(self.max_lr)} is invalid with tune.min_lr={shown(self.min_lr)}: the "
                "test raises the rate from min_lr to max_lr; give a larger max_lr"
            )
        return self


class Sweeper(Section):
    n_trials: rule(int, "the study's trials, over every worker", ge=1) = None
    n_jobs: rule(int, "trials at a time in this worker", ge=1) = None
    heartbeat_interval: rule(Count | None, "seconds; null: no heartbeats") = None
    grace_period: rule(Count | None, "seconds; null: twice the interval") = None
    max_retry: rule(int, "runs again of a dead worker's trial", ge=0) = None


class Launcher(Section):
    n_jobs: rule(int, "jobs at a time", ge=1) = None


class Hydra(Section):
    sweeper: Sweeper = None
    launcher: Launcher = None


class Config(Section):
    """The composed config of train.py."""

    seed: Seed = None
    selection: Selection = None
    data: Data = None
    model: Model = None
    optimizer: Optimizer = None
    loss: Loss = None
    scheduler: Scheduler | None = None
    augment: Augment | None = None
    classifier: Classifier = None
    trainer: Trainer = None
    callbacks: Callbacks | None = None
    logger: Logger | None = None
    tune: Tune | None = None
    hydra: Hydra = None

    @model_validator(mode="after")
    def average_starts(self) -> "Config":
        ema = self.callbacks.ema if self.callbacks else None
        epochs = self.trainer.max_epochs if self.trainer else None
        if ema and ema.start_epoch is not None and epochs not in (None, -1) and ema.start_epoch >= epochs:
            refuse(
                f"callbacks.ema.start_epoch={ema.start_epoch} is invalid with trainer.max_epochs={epochs}: "
                f"the average would never start; give 0 to {epochs - 1}"
            )
        return self

    @model_validator(mode="after")
    def graph_is_traced(self) -> "Config":
        tensorboard = self.logger.tensorboard if self.logger else None
        if tensorboard and tensorboard.log_graph and self.classifier and self.classifier.compile:
            refuse(
                "logger.tensorboard.log_graph=true is invalid with classifier.compile=true: the graph "
                "is traced, and tracing cannot enter a compiled net"
            )
        return self


REFUSED = "refused"  # the pydantic error type of a rule between keys: its message is the whole line


def refuse(message: str) -> None:
    raise PydanticCustomError(REFUSED, "{message}", {"message": message})


def check(cfg: DictConfig) -> None:
    """Raise BadInput for the first declared value of `cfg` outside its rule."""
    values = declared_values(Config, cfg)
    try:
        Config.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        if first["type"] == REFUSED:
            raise BadInput(first["ctx"]["message"]) from None
        keys, field = field_at(Config, first["loc"])
        described = f" ({field.description})" if field.description else ""
        what = allowed(field.annotation, field.metadata)
        if first["type"] == "missing":
            raise BadInput(f"{'.'.join(keys)} is invalid: it is missing; give {what}{described}") from None
        value = values
        for key in keys:
            value = value[key]
        raise BadInput(f"{'.'.join(keys)}={shown(value)} is invalid: {what}{described}") from None


def declared_values(section: type[Section], node: DictConfig) -> dict[str, Any]:
    """The values of `node` that `section` declares, resolved; sections as dicts of theirs."""
    values: dict[str, Any] = {}
    for name, field in section.model_fields.items():
        if name not in node or OmegaConf.is_missing(node, name):
            continue
        value = node[name]
        inner = section_of(field.annotation)
        if isinstance(value, DictConfig) and inner is not None:
            values[name] = declared_values(inner, value)
        elif isinstance(value, DictConfig | ListConfig):
            values[name] = OmegaConf.to_container(value, resolve=True)
        else:
            values[name] = value
    return values


def section_of(annotation: Any) -> type[Section] | None:
    """The section a field holds (an optional one too), or None for a value."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, Section):
            return candidate
    return None


def field_at(section: type[Section], loc: tuple) -> tuple[list[str], Any]:
    """The keys of the value a pydantic error location points into, and that value's field."""
    keys, field = [], None
    for part in loc:
        if section is None or part not in section.model_fields:
            break
        keys.append(part)
        field = section.model_fields[part]
        section = section_of(field.annotation)
    return keys, field


def allowed(annotation: Any, metadata: list = ()) -> str:
    """What a rule allows, in words: `an integer >= 1`, `one of bilinear, pad`, `..., or null`."""
    if get_origin(annotation) is Annotated:
        base, *extra = get_args(annotation)
        inner = [item for info in extra for item in getattr(info, "metadata", [info])]
        return allowed(base, [*metadata, *inner])
    if get_origin(annotation) in (Union, types.UnionType):
        options = [allowed(option, metadata) for option in get_args(annotation) if option is not type(None)]
        if type(None) in get_args(annotation):
            options.append("null")
        return ", or ".join(options)
    if get_origin(annotation) is Literal:
        choices = list(dict.fromkeys(shown(choice) for choice in get_args(annotation)))  # 32 and "32"
        return f"one of {', '.join(choices)}" if len(choices) > 1 else choices[0]
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        plural = allowed(item).replace("an integer", "integers").replace("a number", "numbers")
        plural = plural.replace("a string", "strings")
        least = next((getattr(info, "min_length", 1) for info in metadata if hasattr(info, "min_length")), 1)
        return f"a list of {COUNTS.get(least, str(least))} or more {plural}"
    if annotation is bool:
        return "true or false"
    kind = {int: "an integer", float: "a number", str: "a string"}[annotation]
    bounds = [text for text in map(bound, metadata) if text]
    return " and ".join([f"{kind} {bounds[0]}", *bounds[1:]]) if bounds else kind


COUNTS = {1: "one", 2: "two"}
BOUNDS = ((annotated_types.Ge, "ge", ">="), (annotated_types.Gt, "gt", ">"))
BOUNDS += ((annotated_types.Le, "le", "<="), (annotated_types.Lt, "lt", "<"))


def bound(constraint: Any) -> str:
    for kind, name, sign in BOUNDS:
        if isinstance(constraint, kind):
            value = getattr(constraint, name)
            return f"{sign} {value if isinstance(value, int) else format(value, 'g')}"
    return ""  # min_length: said by "N or more"


def shown(value: Any) -> str:
    """A value as the user wrote it on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ",".join(shown(item) for item in value) + "]"
    return str(value)
