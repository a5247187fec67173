"""Which checkpoint a run resumes from, and the run dir it continues: `ckpt_path=last`, a checkpoint
file, or under SLURM a requeued job's own newest checkpoint."""

from pathlib import Path

from omegaconf import OmegaConf

from mnist_classifier.config import LAST
from mnist_classifier.errors import BadInput
from mnist_classifier.overrides import override_key

LAST_FILE = "last.ckpt"  # written by callbacks.last_checkpoint
HPC_CHECKPOINTS = "hpc_ckpt_*.ckpt"  # written by Lightning into the run dir when SLURM signals a requeue
CKPT_PATH_KEY = "ckpt_path"


def resume_point(
    ckpt_path: str | None, run_dir: Path, log_dir: Path, overrides: list[str]
) -> tuple[Path | None, Path | None]:
    """(the checkpoint to resume from, the run dir whose logs and checkpoints the run continues),
    for a run whose own dir is `run_dir`.

    `ckpt_path=last` resumes the run's own dir when it holds a checkpoint (a fixed `hydra.run.dir`,
    a sweep job's dir named by its trial), else the newest `checkpoints/last.ckpt` of the runs under
    `log_dir` that ran with the same overrides. A checkpoint file inside a run dir
    (`<run>/checkpoints/*.ckpt`) continues that run; one elsewhere starts a new run dir from its
    weights and training state. Under SLURM, a run whose dir already holds a checkpoint is a
    requeued job: without ckpt_path it resumes its own newest checkpoint, as Lightning does with the
    hpc checkpoints it saves on the requeue signal.
    """
    if ckpt_path is None:
        requeued = own_checkpoint(run_dir) if on_slurm() else None
        return requeued, run_dir if requeued else None
    if ckpt_path == LAST:
        if (own := own_checkpoint(run_dir)) is not None:
            return own, run_dir
        path = latest_checkpoint(log_dir, overrides)
        return path, path.parent.parent
    path = Path(ckpt_path).resolve()
    run_dir = path.parent.parent
    inside_a_run = path.parent.name == "checkpoints" and (run_dir / ".hydra").is_dir()
    return path, run_dir if inside_a_run else None


def own_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint a run left in its own dir: `checkpoints/last.ckpt` (saved every epoch,
    and on SIGTERM), or Lightning's `hpc_ckpt_N.ckpt` (saved when SLURM signals a requeue)."""
    found = [*run_dir.glob(HPC_CHECKPOINTS), *(run_dir / "checkpoints").glob(LAST_FILE)]
    return max(found, key=lambda path: path.stat().st_mtime, default=None)


def on_slurm() -> bool:
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return SLURMEnvironment.detect()


def latest_checkpoint(log_dir: Path, overrides: list[str]) -> Path:
    """The newest last checkpoint of the run dirs with these overrides: runs (outputs/DATE/TIME) and
    sweep jobs (outputs/multiruns/DATE/TIME/JOB), so that a sweep run again with ckpt_path=last
    resumes each of its jobs."""
    wanted = without_ckpt_path(overrides)
    runs, jobs = (
        log_dir.glob(f"*/*/checkpoints/{LAST_FILE}"),
        log_dir.glob(f"multiruns/*/*/*/checkpoints/{LAST_FILE}"),
    )
    checkpoints = [*runs, *jobs]
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
