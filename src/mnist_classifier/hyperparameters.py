"""What a run's settings are, flat, for the trackers: the group choices and their values, as
TensorBoard's HParams tab lists them beside the run's final results."""

from typing import Any

from omegaconf import DictConfig, OmegaConf

GROUPS = ("model", "optimizer", "loss", "scheduler", "augment", "data")


def hyperparameters(cfg: DictConfig, choices: dict[str, str | None]) -> dict[str, Any]:
    """What TensorBoard's HParams tab shows for a run: the group choices and their values."""
    hparams: dict[str, Any] = {"seed": cfg.seed}
    for group in GROUPS:
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
