"""Checks and views of the composed Hydra config that train.py needs before it builds anything."""

from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

GPU_ACCELERATORS = ("gpu", "cuda")


def validate(cfg: DictConfig) -> None:
    """Raise ValueError naming the key for values that would otherwise fail only mid-run.

    Values that a constructor checks (batch size, image size, validation size) fail there,
    before training, so they are not repeated here.
    """
    lr = cfg.optimizer.get("lr")
    if lr is not None and not lr > 0:
        raise ValueError(f"optimizer.lr={lr} is invalid: the learning rate must be > 0")
    accelerator = cfg.trainer.get("accelerator")
    if accelerator in GPU_ACCELERATORS and not torch.cuda.is_available():
        raise ValueError(
            f"trainer.accelerator={accelerator} but this machine has no CUDA GPU "
            "(torch.cuda.is_available() is False): use trainer.accelerator=cpu or auto"
        )


def hyperparameters(cfg: DictConfig, choices: dict[str, str | None]) -> dict[str, Any]:
    """What TensorBoard's HParams tab shows for a run: the group choices and their values."""
    hparams: dict[str, Any] = {"seed": cfg.seed}
    for group in ("model", "optimizer", "loss", "scheduler", "data"):
        hparams[group] = choices.get(group)
        values = OmegaConf.to_container(cfg[group], resolve=True) if cfg[group] is not None else {}
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
