"""The checkpoint a run resumes from: finding it (`ckpt_path=last`), and refusing a bad one early."""

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

LAST = "last"  # ckpt_path=last: the last checkpoint of the newest run with the same overrides
LAST_FILE = "last.ckpt"  # written by callbacks.last_checkpoint
CKPT_PATH_KEY = "ckpt_path"


def resume_point(
    ckpt_path: str | None, log_dir: Path, overrides: list[str]
) -> tuple[Path | None, Path | None]:
    """(the checkpoint to resume from, the run dir whose logs and checkpoints the run continues).

    `ckpt_path=last` finds the newest `checkpoints/last.ckpt` of the runs under `log_dir` that ran
    with the same overrides. A checkpoint file inside a run dir (`<run>/checkpoints/*.ckpt`)
    continues that run; one elsewhere starts a new run dir from its weights and training state.
    """
    if ckpt_path is None:
        return None, None
    if ckpt_path == LAST:
        path = latest_checkpoint(log_dir, overrides)
        return path, path.parent.parent
    path = Path(ckpt_path).resolve()
    run_dir = path.parent.parent
    inside_a_run = path.parent.name == "checkpoints" and (run_dir / ".hydra").is_dir()
    return path, run_dir if inside_a_run else None


def latest_checkpoint(log_dir: Path, overrides: list[str]) -> Path:
    """The newest last checkpoint of the run dirs (outputs/DATE/TIME) with these overrides."""
    wanted = without_ckpt_path(overrides)
    checkpoints = log_dir.glob(f"*/*/checkpoints/{LAST_FILE}")
    matching = [
        path for path in checkpoints if without_ckpt_path(recorded_overrides(path.parent.parent)) == wanted
    ]
    if not matching:
        shown = " ".join(wanted) or "none"
        raise FileNotFoundError(
            f"ckpt_path=last found no run under {log_dir} with the same overrides ({shown}) and a "
            f"checkpoints/{LAST_FILE}: run without ckpt_path first, or give a checkpoint file"
        )
    return max(matching, key=lambda path: path.stat().st_mtime)


def recorded_overrides(run_dir: Path) -> list[str]:
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    return list(OmegaConf.load(overrides_file)) if overrides_file.is_file() else []


def without_ckpt_path(overrides: list[str]) -> list[str]:
    return sorted(line for line in overrides if line.split("=", 1)[0].lstrip("+~") != CKPT_PATH_KEY)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint as plain data: torch.load(weights_only=True), so no pickled code can run."""
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises a different type for each way a file is not one
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"ckpt_path={path} is not a checkpoint: torch.load failed ({reason})") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"ckpt_path={path} is not a Lightning checkpoint: it holds no state_dict")
    return checkpoint


def check_same_model(checkpoint: dict[str, Any], model: nn.Module, path: Path) -> None:
    """Raise ValueError naming the first difference unless the checkpoint's weights have the names
    and shapes of `model`'s."""
    ours = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    theirs = {name: list(tensor.shape) for name, tensor in checkpoint["state_dict"].items()}
    if ours == theirs:
        return
    if missing := sorted(ours.keys() - theirs.keys()):
        difference = f"it has no {missing[0]}"
    elif extra := sorted(theirs.keys() - ours.keys()):
        difference = f"it has {extra[0]}, which this model has not"
    else:
        name = next(name for name in ours if ours[name] != theirs[name])
        difference = f"{name} is {theirs[name]} there and {ours[name]} in this model"
    raise ValueError(f"ckpt_path={path} holds a different model than this config's: {difference}")


def run_config(checkpoint_path: Path) -> DictConfig:
    """The composed config of the run that wrote the checkpoint (<run>/.hydra/config.yaml)."""
    config_file = checkpoint_path.parent.parent / ".hydra" / "config.yaml"
    if checkpoint_path.parent.name != "checkpoints" or not config_file.is_file():
        raise FileNotFoundError(
            f"ckpt_path={checkpoint_path} is not in a run dir (<run>/checkpoints/, beside <run>/.hydra/"
            "config.yaml), so the model it was trained with is unknown"
        )
    return OmegaConf.load(config_file)
