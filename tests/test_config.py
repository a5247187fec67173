"""The configuration: every option composes and builds, the defaults, the declared rules, and the
checks a command line gets before Hydra starts a run."""

import re
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch import Trainer
from omegaconf import OmegaConf
from torch import nn

from mnist_classifier.config import NAME_LIMIT, compose, preflight, short_name, validate
from mnist_classifier.data import MNISTDataModule
from mnist_classifier.errors import BadInput
from mnist_classifier.training import instantiate_all, instantiate_classifier

from .conftest import CONF_DIR, ROOT

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir())
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF_DIR / group).glob("*.yaml"))]


def build_everything(cfg) -> None:
    """What a run instantiates, checked piece by piece."""
    assert isinstance(instantiate(cfg.data, augment=instantiate(cfg.augment)), MNISTDataModule)
    classifier = instantiate_classifier(cfg)
    logits = classifier(torch.randn(4, 1, cfg.data.image_size, cfg.data.image_size))
    assert logits.shape == (4, 10)
    loss = classifier.loss(logits, torch.tensor([0, 1, 2, 3]))
    assert loss.ndim == 0 and torch.isfinite(loss)
    optimizer = classifier.optimizer_factory(classifier.parameters())
    assert optimizer.param_groups[0]["lr"] == cfg.optimizer.lr
    if classifier.scheduler_config is not None:
        make = classifier.scheduler_config["scheduler"]
        extra = {"total_steps": 10} if "OneCycle" in cfg.scheduler.scheduler._target_ else {}
        scheduler = make(optimizer, **extra)
        optimizer.step()
        scheduler.step()
    callbacks = {key: entry for key, entry in (cfg.get("callbacks") or {}).items() if key != "optuna_pruning"}
    # The pruning callback needs a sweep's trial: tests/test_sweeps.py runs it.
    assert len(instantiate_all(callbacks)) == sum(entry is not None for entry in callbacks.values())
    assert len(instantiate_all(cfg.get("logger"))) == len(cfg.get("logger") or {})
    if cfg.trainer.accelerator not in ("gpu", "cuda") or torch.cuda.is_available():
        assert isinstance(instantiate(cfg.trainer), Trainer)


@pytest.mark.slow  # a composition and a build for each of the options: the quick loop's largest share
@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_of_every_group_composes_validates_and_builds(
    compose_config, group: str, option: str
) -> None:
    needs = ["hparams_search=optuna"] if group == "pruner" else []  # a pruner belongs to a study
    cfg = compose_config(*needs, f"{group}={option}")
    if cfg.trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        with pytest.raises(
            BadInput, match=r"trainer.accelerator=gpu is invalid: this machine has no CUDA GPU"
        ):
            validate(cfg)
    else:
        validate(cfg)
    build_everything(cfg)


def test_defaults_are_the_default_recipe_on_tensorboard(compose_config) -> None:
    cfg = compose_config()
    assert cfg.model._target_.endswith("LeNet")
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer._partial_ and cfg.optimizer.nesterov
    assert cfg.scheduler.scheduler._target_.endswith("OneCycleLR") and cfg.augment.rotation > 0
    assert cfg.trainer.max_epochs == 10
    assert cfg.loss._target_ == "torch.nn.CrossEntropyLoss"
    assert cfg.data.dataset.name == "mnist" and cfg.classifier.num_classes == 10
    assert cfg.trainer.accelerator == "auto"
    assert list(cfg.logger) == ["tensorboard"]
    assert cfg.callbacks.model_checkpoint.monitor == "val/acc"


def test_mlp_input_size_follows_the_data_image_size(compose_config) -> None:
    cfg = compose_config("model=mlp", "data.image_size=28")
    first = next(m for m in instantiate(cfg.model).modules() if isinstance(m, nn.Linear))
    assert first.in_features == 28 * 28


def test_data_dirs_come_from_the_environment_when_set(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("FASHION_MNIST_DATA_DIR", str(tmp_path / "f"))
    assert compose([], tmp_path).data.data_dir == str(tmp_path / "m")
    assert compose(["data=fashion_mnist"], tmp_path).data.data_dir == str(tmp_path / "f")
    monkeypatch.delenv("FASHION_MNIST_DATA_DIR")
    assert compose(["data=fashion_mnist"], tmp_path).data.data_dir == f"{Path.cwd()}/data"


def test_readme_lists_exactly_the_options_of_each_group() -> None:
    readme = (ROOT / "README.md").read_text()
    for group in GROUPS:
        if group in ("hydra", "paths"):
            continue
        row = re.search(rf"^\| `{group}` \|([^|]*)\|", readme, re.MULTILINE)
        assert row, f"README has no row for the {group} group"
        listed = set(re.findall(r"`([\w-]+)`", row.group(1)))
        assert listed == {path.stem for path in (CONF_DIR / group).glob("*.yaml")}, group


@pytest.mark.parametrize(
    ("key", "good", "bad", "allowed"),
    [
        ("data.batch_size", [1, 7], [0, 1.5, "abc", True, None], "an integer >= 1"),
        ("optimizer.lr", [1e-4, 3], [0, -1, "x", True], "a number > 0 (the learning rate"),
        ("trainer.max_epochs", [-1, 5], [-2, 0, "5"], "an integer >= 1, or -1 (-1: no limit)"),
        ("data.resize", ["pad"], ["nearest", 1], "one of bilinear, pad"),
        ("data.download", [True, False], [1, 0, "true"], "true or false"),
        ("model.hidden_sizes", [[120, 84], [5]], [[], [120, 0], "x", [1.5]], "a list of one or more"),
        ("callbacks.last_checkpoint.every_n_train_steps", [None, 5], [0], "an integer >= 1, or null"),
        ("trainer.devices", ["auto", -1, 2], [0, "all"], "an integer >= 1, or one of auto, -1"),
        ("callbacks.dashboards.histograms_every_n_steps", [0, 200], [-1], "an integer >= 0 (0: off)"),
        ("augment.elastic_cells", [2, 64], [1, 65, 4.5], "an integer >= 2 and <= 64"),
    ],
)
def test_each_rule_accepts_its_values_and_refuses_others_saying_what_it_allows(
    compose_config, key: str, good: list, bad: list, allowed: str
) -> None:
    cfg = compose_config()
    for value in good:
        OmegaConf.update(cfg, key, value, force_add=True)
        validate(cfg)
    for value in bad:
        OmegaConf.update(cfg, key, value, force_add=True)
        with pytest.raises(BadInput, match=re.escape(f"is invalid: {allowed}")):
            validate(cfg)


def test_a_key_the_composition_lacks_is_not_checked(compose_config) -> None:
    cfg = compose_config("optimizer=adam", "augment=none", "scheduler=none")
    assert "momentum" not in cfg.optimizer and not cfg.augment and cfg.scheduler is None
    validate(cfg)


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--cfg", "job", "optimizer.lr=-1"],  # Hydra prints the config; the run is never started
        ["-m", "optimizer.lr=0.1,0.01", "seed=1,2"],
        ["-m", "hparams_search=optuna"],
        ["+trainer.limit_train_batches=2", "~logger"],
    ],
)
def test_preflight_lets_good_command_lines_and_hydra_flags_through(tiny_mnist: Path, argv: list[str]) -> None:
    preflight([f"data.data_dir={tiny_mnist}", "data.val_size=40", *argv])


def test_preflight_checks_every_swept_value_not_only_the_first(tiny_mnist: Path) -> None:
    with pytest.raises(BadInput, match=r"^optimizer.lr=-1 is invalid"):
        preflight(["-m", "optimizer.lr=0.1,-1"])
    # The study's own search space, from hparams_search: an interval is checked at both ends.
    with pytest.raises(BadInput, match=r"^optimizer.lr=0.0 is invalid"):
        preflight(["-m", "hparams_search=optuna", "optimizer.lr=tag(log,interval(0.0,0.1))"])
    with pytest.raises(BadInput, match=r"^optimizer.lr=0.1,-1 is invalid without -m"):
        preflight(["optimizer.lr=0.1,-1"])


@pytest.mark.slow  # composes each value of the study's search space
def test_preflight_checks_a_studys_search_space_with_its_fixed_settings() -> None:
    # lenet_fast fixes scheduler=onecycle and searches its pct_start: the probe must compose both.
    preflight(["-m", "hparams_search=lenet_fast"])
    with pytest.raises(BadInput, match=r"^scheduler.scheduler.pct_start=1.5 is invalid"):
        preflight(["-m", "hparams_search=lenet_fast", "scheduler.scheduler.pct_start=interval(0.1, 1.5)"])


def test_a_run_dir_name_too_long_for_a_file_system_is_cut_and_stays_unique() -> None:
    assert short_name("model=mlp,seed=1") == "model=mlp,seed=1"
    long = ",".join(f"key{index}=value{index}" for index in range(30))
    other = long.replace("value29", "value30")
    assert len(short_name(long)) == NAME_LIMIT <= 255 and short_name(long) != short_name(other)
    assert short_name(long).startswith(long[:100])


def test_lenet_fast_trains_channels_last_with_the_fused_adam_step(compose_config) -> None:
    classifier = instantiate_classifier(compose_config("experiment=lenet_fast"))
    assert classifier.optimizer_factory(classifier.parameters()).defaults["fused"] is True
    layout = torch.channels_last  # of conv2's weights: conv1's, of one channel, are in both layouts
    assert classifier.net.conv2.weight.is_contiguous(memory_format=layout)
    assert classifier(torch.randn(2, 1, 32, 32)).shape == (2, 10)
