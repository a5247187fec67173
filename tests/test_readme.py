"""The README's commands, run: every `python ...` line of its shell blocks, on the tiny data with
small-run overrides appended, in a folder holding the files its examples name. A renamed option
or a stale command fails here. They run in the test's process as `python` runs them (runpy), but
serve.py, which serves until stopped."""

import queue
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from .conftest import ROOT, TrainedRun, run_in_process, synthetic_digits, user_environment
from .drawings import block, broken_seven, page, ring, row

README = (ROOT / "README.md").read_text()
# The Extending section's commands need the files it shows: tests/test_extending.py runs them.
EXTENDING = README.split("\n## Extending\n", 1)[1].split("\n## ", 1)[0]
# Appended to every training command: a few batches of the tiny data, one epoch.
SMALL_RUN = ["data.val_size=40", "data.batch_size=16", "trainer.max_epochs=1"]
# What the README's examples name, made in each command's folder.
EXAMPLE_RUN = "outputs/2026-11-25/10-00-00-000000"
# The commands not run here, and why: each needs a GPU or a cluster (a shared study's database,
# SLURM); tests/test_sweeps.py runs the shared-study commands against a PostgreSQL server it starts.
NOT_HERE = {
    "python train.py trainer.accelerator=gpu": "needs a CUDA GPU",
    "python train.py -m hparams_search=optuna hydra.sweeper.storage=$STORAGE "
    "hydra.sweeper.study_name=lenet": "needs a PostgreSQL server: tests/test_sweeps.py starts one",
    "python train.py -m hparams_search=optuna hydra.sweeper.storage=/shared/studies/lenet.journal": (
        "needs a shared file system: tests/test_sweeps.py runs workers on a journal file"
    ),
    "python train.py -m hparams_search=optuna hydra/launcher=slurm hydra.launcher.partition=gpu "
    "hydra.sweeper.storage=$STORAGE": "needs a SLURM cluster: tests/test_sweeps.py simulates its requeue",
    "python -m mnist_classifier.report --storage $STORAGE --study lenet --out reports/lenet": (
        "needs a PostgreSQL server: tests/test_sweeps.py reports from one"
    ),
}


def commands(text: str) -> list[str]:
    """The `python ...` lines of the shell blocks, without their comments."""
    lines = []
    for shell in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        for line in shell.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command.startswith("python "):
                lines.append(command)
    return lines


COMMANDS = commands(README.replace(EXTENDING, ""))


def test_the_readme_has_commands_and_names_only_real_ones_as_skipped() -> None:
    assert len(COMMANDS) >= 15
    assert set(NOT_HERE) <= set(COMMANDS)


@pytest.fixture(scope="module")
def examples(trained_run: TrainedRun, tiny_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with what the examples name: a run dir, checkpoints of three runs and any other the
    README names, a digit image."""
    folder = tmp_path_factory.mktemp("examples")
    shutil.copytree(trained_run.run_dir, folder / EXAMPLE_RUN)
    for run in ("run1", "run2", "run3"):
        (folder / run).mkdir()
        shutil.copy(trained_run.last, folder / run / "last.ckpt")
    for named in {arg for command in COMMANDS for arg in shlex.split(command) if arg.endswith(".ckpt")}:
        if not (folder / named).exists():  # a checkpoint the README names, e.g. of its Results
            (folder / named).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(trained_run.best, folder / named)
    images, _ = synthetic_digits(1, seed=5)
    Image.fromarray(images[0].numpy()).save(folder / "digit.png")
    page(ring()).convert("RGB").save(folder / "photo.jpg")
    row(ring(20, 60, 110), broken_seven(160), block(260)).convert("RGB").save(folder / "number.jpg")
    (folder / "scans" / "week1").mkdir(parents=True)
    page(ring()).convert("RGB").save(folder / "scans" / "week1" / "a.jpg")
    for label in ("0", "7"):
        (folder / "labelled" / label).mkdir(parents=True)
        page(ring()).save(folder / "labelled" / label / "a.png")
    return folder


def small(argv: list[str]) -> list[str]:
    """A command with its small-run settings: training runs get a few batches, a study 2 trials, the
    handwriting benchmark 20 digits."""
    script = Path(argv[0]).name
    if script == "wild_digits.py":
        return [*argv, "--count", "20"]
    if script != "train.py":
        return argv
    extra = ["hydra.sweeper.n_trials=2"] if any(arg.startswith("hparams_search=") for arg in argv) else []
    return [*argv, *SMALL_RUN, *extra]


def serve(argv: list[str], cwd: Path, data_dir: Path) -> None:
    """serve.py serves until stopped: on a free port, until its page answers; then it is stopped."""
    server = subprocess.Popen([sys.executable, *argv, "--port", "0"], cwd=cwd, env=user_environment(data_dir),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=lambda: [*map(lines.put, server.stderr), lines.put(None)], daemon=True).start()
    deadline = time.monotonic() + 120
    try:
        while (line := lines.get(timeout=max(0.1, deadline - time.monotonic()))) is not None:
            if found := re.search(r"Uvicorn running on (http://\S+)", line):  # where it listens
                with urllib.request.urlopen(found.group(1), timeout=60) as response:
                    assert response.status == 200 and b"<canvas" in response.read()
                return
        raise AssertionError(f"serve.py ended with status {server.wait()} before serving")
    finally:
        server.terminate()
        server.wait(timeout=60)


def newest(folder: Path, pattern: str) -> Path:
    return max(folder.glob(pattern), key=lambda path: path.stat().st_mtime)


def check_train(argv: list[str], folder: Path, output: str) -> None:
    if "--cfg" in argv:
        assert (
            "_target_: mnist_classifier.models.LeNet" in output
            and not (folder / "outputs" / "2026-12-02").exists()
        )
    elif "-m" in argv:  # each job a run dir, and the sweep's report in its dir
        report = newest(folder / "outputs", "*/**/report.md")
        assert report.read_text() in output and len(list(report.parent.glob("*/.hydra"))) >= 2
    elif "tune=lr_find" in argv:  # a range test: its suggestion, not a run's summary
        for line in ("suggested rate:", "swept:", "use it:", "plot:"):
            assert line in output, line
    else:
        for line in ("best val accuracy:", "best epoch:", "test accuracy:", "checkpoint:", "run dir:"):
            assert line in output, line
        checkpoint = output.split("checkpoint:", 1)[1].split()[0]
        keeps_none = {"debug=fast", "debug=profile"} & set(argv)
        assert (checkpoint == "none:") if keeps_none else Path(checkpoint).is_file()
        if any(arg.startswith("ckpt_path=") for arg in argv):
            assert "resuming from " in output
        if "debug=profile" in argv:  # the table, kept in the run's log (tests/test_profile.py: the rest)
            log = (Path(output.split("run dir:", 1)[1].split()[0]) / "train.log").read_text()
            assert "FIT Profiler Report" in log
        for tracker, shown in (("mlflow", "mlflow ui --backend-store-uri"), ("wandb", "wandb sync")):
            if any(arg.startswith("logger=") and tracker in arg for arg in argv):
                assert shown in output, tracker


def check_predict(argv: list[str], folder: Path, output: str) -> None:
    lines = [line for line in output.splitlines() if line and not line.startswith("[")]
    if "csv" in argv:
        assert lines[0].startswith("path,label,probability,label_2,probability_2,label_3,probability_3")
        assert len(lines) == 2 and lines[1].count(",") == 6  # the one scan, its three likeliest labels
    else:
        assert lines and all(len(line.split("\t")) == (4 if "--number" in argv else 3) for line in lines), (
            lines
        )
    if "--save-inputs" in argv:
        assert len(list((folder / argv[argv.index("--save-inputs") + 1]).rglob("*.png"))) == 1


def check_output(argv: list[str], folder: Path, output: str) -> None:
    """What the README says the command does: its printed results and the files it writes."""
    script = Path(argv[1] if argv[0] == "-m" else argv[0]).name
    if script == "train.py":
        check_train(argv, folder, output)
    elif script == "predict.py":
        check_predict(argv, folder, output)
    elif script == "eval.py":
        checkpoints = [arg for arg in argv[1:] if arg.endswith(".ckpt")]
        what = "accuracy on 2 images of labelled" if "--images" in argv else "test accuracy"
        assert all(f"{path}: {what}" in output for path in checkpoints)
        assert ("ensemble of 3: test accuracy" in output) == (len(checkpoints) == 3)
    elif script == "export.py":
        export = folder / Path(argv[1]).parent.parent / "export"
        assert sorted(path.name for path in export.iterdir()) == [
            "model.onnx",
            "model.pt2",
            "preprocessing.json",
        ]
    elif script == "mnist_classifier.report":
        assert (folder / argv[2] / "report.md").read_text() in output
    elif script == "wild_digits.py":
        assert "| condition | images | accuracy |" in output and "| photo-like | 20 |" in output
    else:
        raise AssertionError(f"no check of what {script} does: add one")


@pytest.mark.slow
@pytest.mark.parametrize("command", [command for command in COMMANDS if command not in NOT_HERE])
def test_a_readme_command_does_what_the_readme_says(
    command: str, examples: Path, tiny_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    folder = Path(shutil.copytree(examples, tmp_path / "folder"))
    for name, value in user_environment(tiny_mnist).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(folder)  # and back after the test
    monkeypatch.setattr(sys, "argv", sys.argv)
    argv = shlex.split(command)[1:]
    if argv[0].endswith(".py"):
        argv[0] = str(ROOT / argv[0])
    if "ckpt_path=last" in argv:  # resumes a run with the same overrides: there must be one first
        run_in_process(small([arg for arg in argv if arg != "ckpt_path=last"]), folder)
    if sweep_dirs := [arg for arg in argv if arg.startswith("outputs/multiruns/")]:
        run_in_process(small([str(ROOT / "train.py"), "-m", "seed=1"]), folder)
        (made,) = (folder / "outputs" / "multiruns").glob("*/*")
        argv[argv.index(sweep_dirs[0])] = str(made)
    if Path(argv[0]).name == "serve.py":  # it serves until stopped: a process of its own
        serve(argv, folder, tiny_mnist)
        return
    capsys.readouterr()  # what the runs before it printed
    run_in_process(small(argv), folder)
    captured = capsys.readouterr()
    check_output(argv, folder, captured.out + captured.err)
