"""The checkpoint a run resumes from, and the run dir it goes on in (`ckpt_path=last` or a file)."""

from pathlib import Path

from omegaconf import OmegaConf

from mnist_classifier.config import LAST
from mnist_classifier.errors import BadInput
from mnist_classifier.overrides import override_key

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
        raise BadInput(
            f"ckpt_path=last is invalid here: no run under {log_dir} with the same overrides ({shown}) has "
            f"a checkpoints/{LAST_FILE}; run without ckpt_path first, or give a checkpoint file"
        )
    return max(matching, key=lambda path: path.stat().st_mtime)


def recorded_overrides(run_dir: Path) -> list[str]:
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    return list(OmegaConf.load(overrides_file)) if overrides_file.is_file() else []


def without_ckpt_path(overrides: list[str]) -> list[str]:
    return sorted(line for line in overrides if override_key(line) != CKPT_PATH_KEY)
