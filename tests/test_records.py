"""What a run records: environment.json (what reproduces it) and each sweep job's job.json. Both as a
run leaves them are checked by the runs' tests (test_train.py, test_sweeps.py)."""

import subprocess
from pathlib import Path

from mnist_classifier.records import git_state


def test_the_run_record_says_whether_the_code_had_uncommitted_changes(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("first\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    clean = git_state(tmp_path)
    assert clean["dirty"] is False and len(clean["commit"]) == 40
    (tmp_path / "notes.txt").write_text("untracked: not a change of the code")
    assert git_state(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("changed\n")
    assert git_state(tmp_path) == {"commit": clean["commit"], "dirty": True}
    assert git_state(tmp_path.parent / "nowhere") == {"commit": None, "dirty": None}
