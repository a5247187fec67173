"""Which checkpoint a run resumes from, and the run dir it continues: ckpt_path=last, a checkpoint
file, and a requeued SLURM job's own newest checkpoint."""

import os
from pathlib import Path

import pytest
import yaml

from mnist_classifier.resume import resume_point


def make_run(log_dir: Path, name: str, overrides: list[str], age: float) -> Path:
    """A run dir with Hydra's record of its overrides and a last checkpoint `age` seconds old."""
    run_dir = log_dir / "2026-11-25" / name
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    last = run_dir / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"")
    stamp = last.stat().st_mtime - age
    os.utime(last, (stamp, stamp))
    return run_dir


def test_last_resumes_the_newest_run_with_the_same_overrides_in_its_own_dir(tmp_path: Path) -> None:
    make_run(tmp_path, "10-00-00", ["optimizer=adam"], age=30)
    newest = make_run(tmp_path, "11-00-00", ["optimizer=adam", "ckpt_path=last"], age=20)
    make_run(tmp_path, "12-00-00", ["optimizer=sgd"], age=10)
    assert resume_point("last", tmp_path / "new", tmp_path, ["optimizer=adam", "ckpt_path=last"]) == (
        newest / "checkpoints" / "last.ckpt",
        newest,
    )
    assert resume_point(None, tmp_path / "new", tmp_path, []) == (None, None)


def test_a_checkpoint_file_continues_its_run_dir_and_one_elsewhere_starts_a_new_one(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "10-00-00", [], age=0)
    inside = run_dir / "checkpoints" / "last.ckpt"
    assert resume_point(str(inside), tmp_path / "new", tmp_path, []) == (inside, run_dir)
    elsewhere = tmp_path / "copy.ckpt"
    elsewhere.write_bytes(b"")
    assert resume_point(str(elsewhere), tmp_path / "new", tmp_path, []) == (elsewhere, None)


@pytest.fixture
def in_run_dir(tmp_path: Path) -> Path:
    """The dir of the run that resumes."""
    return tmp_path / "run"


def test_ckpt_path_last_resumes_a_fixed_run_dirs_own_checkpoint(in_run_dir: Path, tmp_path: Path) -> None:
    own = in_run_dir / "checkpoints" / "last.ckpt"
    own.parent.mkdir(parents=True)
    own.write_bytes(b"")
    # Whatever its overrides were: the run dir is the one the user named.
    assert resume_point("last", in_run_dir, tmp_path / "outputs", ["trainer.max_epochs=9"]) == (
        own,
        in_run_dir,
    )


def test_on_slurm_a_run_dir_holding_checkpoints_resumes_the_newest(
    in_run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resume_point(None, in_run_dir, tmp_path, []) == (None, None)
    (in_run_dir / "checkpoints").mkdir(parents=True)
    last = in_run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(b"")
    os.utime(last, (1, 1))  # older than the checkpoint Lightning saved on the requeue signal
    hpc = in_run_dir / "hpc_ckpt_1.ckpt"
    hpc.write_bytes(b"")
    assert resume_point(None, in_run_dir, tmp_path, []) == (None, None)  # not on SLURM: a new start
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    assert resume_point(None, in_run_dir, tmp_path, []) == (hpc, in_run_dir)
