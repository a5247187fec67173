import re
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch import Trainer
from lightning.pytorch.profilers import SimpleProfiler
from torch import nn

from mnist_classifier.config import hyperparameters, validate
from mnist_classifier.data import MNISTDataModule
from mnist_classifier.profilers import NoProfiler

from .conftest import CONF_DIR, ROOT

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir())
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF_DIR / group).glob("*.yaml"))]


def build_everything(cfg) -> None:
    """What train.py instantiates, checked piece by piece."""
    assert isinstance(instantiate(cfg.data), MNISTDataModule)
    net = instantiate(cfg.model)
    logits = net(torch.randn(4, 1, cfg.data.image_size, cfg.data.image_size))
    assert logits.shape == (4, 10)
    loss = instantiate(cfg.loss)(logits, torch.tensor([0, 1, 2, 3]))
    assert loss.ndim == 0 and torch.isfinite(loss)
    optimizer = instantiate(cfg.optimizer)(net.parameters())
    assert optimizer.param_groups[0]["lr"] == cfg.optimizer.lr
    scheduler = instantiate(cfg.scheduler, _convert_="all")
    if scheduler is not None:
        make = scheduler["scheduler"]
        extra = {"total_steps": 10} if "OneCycle" in cfg.scheduler.scheduler._target_ else {}
        scheduler = make(optimizer, **extra)
        optimizer.step()
        scheduler.step()
    for group in ("logger", "callbacks"):
        for name, entry in (cfg.get(group) or {}).items():
            # A sweep's trial gives the pruning callback its trial (tests/test_sweeps.py).
            if entry is not None and name != "optuna_pruning":
                instantiate(entry)
    if cfg.trainer.accelerator != "gpu" or torch.cuda.is_available():
        assert isinstance(instantiate(cfg.trainer), Trainer)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_of_every_group_composes_and_builds(compose_config, group: str, option: str) -> None:
    # A pruner belongs to the Optuna search, whose defaults pick one.
    needs = ["hparams_search=optuna"] if group == "pruner" else []
    cfg = compose_config(*needs, f"{group}={option}")
    build_everything(cfg)


def test_defaults_are_lenet_sgd_cross_entropy_without_scheduler_on_tensorboard(compose_config) -> None:
    cfg = compose_config()
    assert cfg.model._target_.endswith("LeNet")
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer._partial_
    assert cfg.optimizer.lr == 0.01  # the tutorial's
    assert cfg.loss._target_ == "torch.nn.CrossEntropyLoss"
    assert cfg.scheduler is None
    assert cfg.trainer.accelerator == "auto"
    assert list(cfg.logger) == ["tensorboard"]
    assert cfg.callbacks.model_checkpoint.monitor == "val/acc"


@pytest.mark.parametrize(
    ("overrides", "profiler"), [((), NoProfiler), (("trainer.profiler=simple",), SimpleProfiler)]
)
def test_the_trainer_profiles_nothing_by_default_and_one_override_profiles(
    compose_config, overrides: tuple[str, ...], profiler: type
) -> None:
    trainer = instantiate(compose_config(*overrides).trainer)
    assert type(trainer.profiler) is profiler


def test_mlp_input_size_follows_the_data_image_size(compose_config) -> None:
    cfg = compose_config("model=mlp", "data.image_size=28")
    first = next(m for m in instantiate(cfg.model).modules() if isinstance(m, nn.Linear))
    assert first.in_features == 28 * 28


def test_data_dir_comes_from_the_environment_when_set(compose_config, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path))
    assert compose_config().data.data_dir == str(tmp_path)


def test_readme_lists_exactly_the_options_of_each_group() -> None:
    readme = (ROOT / "README.md").read_text()
    for group in GROUPS:
        if group in ("hydra", "paths"):
            continue
        row = re.search(rf"^\| `{group}` \|([^|]*)\|", readme, re.MULTILINE)
        assert row, f"README has no row for the {group} group"
        listed = set(re.findall(r"`([\w-]+)`", row.group(1)))
        assert listed == {path.stem for path in (CONF_DIR / group).glob("*.yaml")}, group


@pytest.mark.parametrize("lr", [0, -0.1])
def test_validate_refuses_a_learning_rate_that_is_not_positive(compose_config, lr: float) -> None:
    with pytest.raises(ValueError, match=rf"optimizer.lr={lr} is invalid"):
        validate(compose_config(f"optimizer.lr={lr}"))


def test_validate_refuses_the_gpu_on_a_machine_without_one(compose_config, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"trainer\.accelerator=gpu but this machine has no CUDA GPU"):
        validate(compose_config("trainer=gpu"))
    validate(compose_config("trainer=cpu"))


def test_hyperparameters_hold_the_choices_and_their_values(compose_config) -> None:
    cfg = compose_config("optimizer=adam", "model=mlp")
    hparams = hyperparameters(cfg, {"model": "mlp", "optimizer": "adam", "loss": "cross_entropy"})
    assert hparams["model"] == "mlp" and hparams["optimizer"] == "adam"
    assert hparams["optimizer.lr"] == 0.001 and "optimizer.momentum" not in hparams
    assert hparams["model.hidden_sizes"] == "[200, 50]"
    assert hparams["data.batch_size"] == 64 and hparams["seed"] == 42
    assert not any(key.split(".")[-1].startswith("_") for key in hparams)
