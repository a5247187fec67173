"""predict.py and eval.py --images on a user's images: files, folders and globs read through MNIST's
preprocessing (handwriting.py), printed as TSV, CSV or JSON with the K likeliest labels, numbers read
left to right, what the net saw saved, every bad input one line while the other images are still read.

The shared run's checkpoint was trained on tiny synthetic data: it does not recognise real digits, so
the labels are checked against the model's own reading of the same preprocessed digits."""

import csv
import fcntl
import io
import itertools
import json
import os
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from mnist_classifier import handwriting
from mnist_classifier.checkpoint_files import RECORD
from mnist_classifier.handwriting import likeliest_numbers
from mnist_classifier.inference import InferenceModel, load_for_inference
from mnist_classifier.mnist_format import mnist_digit
from mnist_classifier.written_numbers import mnist_digits_of_number

from .conftest import ROOT, TrainedRun, data_set, script_module, user_environment
from .drawings import INK, block, broken_seven, ell, encoded, page, png_header, ring, row

ALLOWED = "PNG, JPEG, WebP, BMP or TIFF"


def strokes(*points: tuple[int, int]) -> Callable[[ImageDraw.ImageDraw], None]:
    """A pen's stroke through the points."""
    return lambda draw: draw.line(points, fill=INK, width=12, joint="curve")


# Four different drawings, so that the labels printed can differ
DRAWINGS = {
    "zero": ring(),
    "one": strokes((150, 40), (140, 200)),
    "seven": strokes((90, 50), (210, 50), (130, 200)),
    "ell": ell,
}


@dataclass
class Result:
    status: int
    out: str
    errors: list[str]  # stderr's lines

    @property
    def rows(self) -> list[list[str]]:
        return [line.split("\t") for line in self.out.splitlines()]


@pytest.fixture
def predict(trained_run: TrainedRun, capsys: pytest.CaptureFixture) -> Callable[..., Result]:
    """predict(*argv) -> predict.py's exit status and output, in this process, with the shared run's
    best checkpoint."""
    main = script_module("predict.py").main

    def run(*argv: str | Path) -> Result:
        try:
            status = main([str(trained_run.best), *map(str, argv)])
        except SystemExit as stop:  # refused before any image was read
            status = stop.code
        captured = capsys.readouterr()
        return Result(status, captured.out, captured.err.splitlines())

    return run


@pytest.fixture(scope="module")
def model(trained_run: TrainedRun) -> InferenceModel:
    return load_for_inference(trained_run.best)


def drawn(folder: Path, name: str, drawing: str = "zero", **options) -> Path:
    """A drawing saved as an image file (its format by the name's suffix)."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    page(DRAWINGS[drawing]).convert("RGB").save(path, **options)
    return path


def labels_of(model: InferenceModel, paths: list[Path]) -> tuple[list[str], list[float]]:
    """The model's labels and probabilities for the digits that the preprocessing finds in the files."""
    probabilities = model.probabilities(torch.stack([mnist_digit(path) for path in paths]))
    best = probabilities.max(dim=1)
    return [model.classes[index] for index in best.indices], best.values.tolist()


def test_predict_prints_the_models_labels_for_the_digits_it_sees(
    predict: Callable[..., Result], model: InferenceModel, tmp_path: Path
) -> None:
    files = [drawn(tmp_path, f"{name}.png", name) for name in DRAWINGS]
    big = tmp_path / "zero_big.jpg"  # the same digit 4 times larger, as a JPEG: the same digit seen
    Image.open(files[0]).resize((1200, 960), Image.Resampling.BICUBIC).save(big, quality=95)

    result = predict(*files, big, "--save-inputs", tmp_path / "seen")
    assert (result.status, result.errors) == (0, [])
    assert [row[0] for row in result.rows] == [*map(str, files), str(big)]
    labels, probabilities = labels_of(model, files)
    assert [row[1] for row in result.rows[:4]] == labels
    assert [float(row[2]) for row in result.rows[:4]] == pytest.approx(probabilities, abs=1e-4)
    assert result.rows[4][1] == result.rows[0][1]
    seen = [np.asarray(Image.open(f"{tmp_path / 'seen'}{path}.png"), dtype=float) for path in (files[0], big)]
    assert np.corrcoef(seen[0].ravel(), seen[1].ravel())[0, 1] > 0.85  # the same ring, up to a pixel


def test_save_inputs_writes_an_image_named_with_dotdot_inside_its_folder(
    predict: Callable[..., Result], tmp_path: Path
) -> None:
    # Run from tmp/work: ../zero.png is tmp/zero.png, ../../<tmp>/one.png too far up to be kept as is.
    work = tmp_path / "work"
    work.mkdir()
    images = [drawn(tmp_path, "zero.png"), drawn(tmp_path, "one.png", "one")]
    os.chdir(work)  # put back after the test (conftest's restored_state)
    before = set(tmp_path.rglob("*"))
    names = ["../zero.png", f"../../{tmp_path.name}/one.png"]
    result = predict(*names, "--save-inputs", "seen")
    assert (result.status, result.errors) == (0, [])
    # Each `..` is a folder named __ under seen/: nothing is written outside it.
    written = {path.relative_to(tmp_path).as_posix() for path in set(tmp_path.rglob("*")) - before}
    assert written == {
        "work/seen", "work/seen/__", "work/seen/__/zero.png.png",
        "work/seen/__/__", f"work/seen/__/__/{tmp_path.name}", f"work/seen/__/__/{tmp_path.name}/one.png.png",
    }  # fmt: skip
    for image, saved in zip(images, ["__/zero.png.png", f"__/__/{tmp_path.name}/one.png.png"], strict=True):
        assert np.array_equal(np.asarray(Image.open(work / "seen" / saved)), mnist_digit(image).numpy())


def test_folders_are_searched_for_images_and_globs_expanded(
    predict: Callable[..., Result], tmp_path: Path
) -> None:
    scans = tmp_path / "scans"
    images = [
        drawn(scans, "a.png"),
        drawn(scans, "b/c.JPG"),
        drawn(scans, "b/d/e.webp"),
        drawn(scans, "f.bmp"),
    ]
    (scans / "notes.txt").write_text("not an image: a folder's search skips it")
    result = predict(scans, f"{scans}/**/*.JPG", f"{tmp_path}/scans/[a]*")
    assert (result.status, result.errors) == (0, [])
    assert [row[0] for row in result.rows] == [*map(str, sorted(images)), str(images[1]), str(images[0])]


def test_csv_and_json_give_the_k_likeliest_labels(
    predict: Callable[..., Result], model: InferenceModel, tmp_path: Path
) -> None:
    files = [drawn(tmp_path, f"{name}.png", name) for name in ("zero", "seven")]
    probabilities = model.probabilities(torch.stack([mnist_digit(path) for path in files]))
    values, indices = probabilities.topk(3)
    expected = [[model.classes[index] for index in each] for each in indices.tolist()]

    result = predict(*files, "--top", "3", "--format", "csv")
    table = list(csv.DictReader(io.StringIO(result.out)))
    assert list(table[0]) == [
        "path",
        "label",
        "probability",
        "label_2",
        "probability_2",
        "label_3",
        "probability_3",
    ]
    assert [[row["label"], row["label_2"], row["label_3"]] for row in table] == expected
    assert [float(row["probability_3"]) for row in table] == pytest.approx(values[:, 2].tolist(), abs=1e-4)

    records = json.loads(predict(*files, "--top", "3", "--format", "json").out)
    assert [record["path"] for record in records] == list(map(str, files))
    assert [[guess["label"] for guess in record["top"]] for record in records] == expected
    assert [record["probability"] for record in records] == pytest.approx(values[:, 0].tolist(), abs=1e-5)

    assert [len(row) for row in predict(*files, "--top", "2").rows] == [
        5,
        5,
    ]  # path, 2 labels and probabilities


def test_a_number_is_read_left_to_right_with_each_digits_probability(
    predict: Callable[..., Result], model: InferenceModel, tmp_path: Path
) -> None:
    number = tmp_path / "number.png"
    row(ring(20, 60, 110), broken_seven(160), block(260)).save(number)
    digits = torch.stack(mnist_digits_of_number(number, judge=model.probabilities))
    probabilities = model.probabilities(digits)
    best = probabilities.max(dim=1)

    result = predict("--number", number, "--top", "2", "--save-inputs", tmp_path / "seen")
    assert (result.status, result.errors) == (0, [])
    ((path, label, probability, each, second, second_probability),) = result.rows
    assert (path, len(label)) == (str(number), 3)  # the 7's bar and stem are one digit
    assert label == "".join(model.classes[index] for index in best.indices)
    assert each.split() == [
        f"{digit}:{value:.4f}" for digit, value in zip(label, best.values.tolist(), strict=True)
    ]
    assert float(probability) == pytest.approx(best.values.prod().item(), abs=1e-4)
    assert second != label and float(second_probability) <= float(probability)
    seen = np.asarray(Image.open(f"{tmp_path / 'seen'}{number}.png"))
    assert np.array_equal(seen, torch.cat(list(digits), dim=1).numpy())  # the digits side by side


def test_the_likeliest_numbers_are_those_of_every_reading_sorted() -> None:
    probabilities = torch.rand(3, 4, generator=torch.Generator().manual_seed(0)).softmax(dim=1)
    readings = {
        "".join(map(str, digits)): probabilities[[0, 1, 2], list(digits)].prod().item()
        for digits in itertools.product(range(4), repeat=3)
    }
    expected = sorted(readings.items(), key=lambda reading: -reading[1])[:5]
    found = likeliest_numbers(probabilities, ("0", "1", "2", "3"), 5)
    assert [(guess.label, pytest.approx(guess.probability)) for guess in found] == expected


def test_images_are_classified_in_batches_in_their_order_with_the_bad_ones_listed(
    predict: Callable[..., Result], model: InferenceModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handwriting, "BATCH", 4)
    folder = tmp_path / "many"
    paths = [
        drawn(folder, f"{index:03}.png", name) for index, name in zip(range(10), itertools.cycle(DRAWINGS))
    ]
    (folder / "004.png").write_bytes(b"")  # bad ones among them: the first and the last of a batch
    (folder / "007.png").write_text("a note")
    good = [path for path in paths if path.name not in ("004.png", "007.png")]
    (tmp_path / "empty").mkdir()

    result = predict(folder, tmp_path / "missing.png", tmp_path / "empty")
    assert result.status == 2
    assert [row[0] for row in result.rows] == list(map(str, good))
    assert [row[1] for row in result.rows] == labels_of(model, good)[0]
    assert result.errors == [  # those of the arguments first, then those of the files as they were read
        f"error: {tmp_path / 'empty'} is invalid: it holds no images ({ALLOWED})",
        f"error: {folder / '004.png'} is invalid: it is empty (give a {ALLOWED} image)",
        f"error: {folder / '007.png'} is invalid: it is not an image ({ALLOWED})",
        f"error: {tmp_path / 'missing.png'} is invalid: there is no such file (give a {ALLOWED} image)",
    ]


def fashion_checkpoint(trained_run: TrainedRun, path: Path) -> Path:
    """The shared run's checkpoint, said to be of Fashion-MNIST: its classes are no digits."""
    checkpoint = torch.load(trained_run.best, weights_only=True)
    checkpoint[RECORD] |= {"dataset": asdict(data_set("fashion_mnist"))}
    torch.save(checkpoint, path)
    return path


def a_file(content: bytes, name: str = "a.png") -> Callable[[Path], list[str]]:
    """The arguments naming a file of this content."""

    def arguments(tmp: Path) -> list[str]:
        (tmp / name).write_bytes(content)
        return [str(tmp / name)]

    return arguments


def arguments(*argv: str) -> Callable[[Path], list[str]]:
    """The arguments, {tmp} the test's folder; a folder named `empty` is made."""

    def made(tmp: Path) -> list[str]:
        (tmp / "empty").mkdir()
        return [arg.format(tmp=tmp) for arg in argv]

    return made


BLANK = encoded(page(lambda draw: None))
TRUNCATED = encoded(page(ring()), "JPEG")[:600]
BAD_INPUTS: list[tuple[str, Callable[[Path], list[str]], str]] = [  # each message, as the line begins
    ("missing", arguments("{tmp}/none.png"), "{tmp}/none.png is invalid: there is no such file"),
    ("empty folder", arguments("{tmp}/empty"), f"{{tmp}}/empty is invalid: it holds no images ({ALLOWED})"),
    ("glob", arguments("{tmp}/*.png"), "{tmp}/*.png is invalid: it matches no files"),
    ("0 bytes", a_file(b""), "{tmp}/a.png is invalid: it is empty"),
    ("truncated", a_file(TRUNCATED, "a.jpg"), "{tmp}/a.jpg is invalid: it is truncated"),
    ("text as png", a_file(b"a note"), f"{{tmp}}/a.png is invalid: it is not an image ({ALLOWED})"),
    ("bomb", a_file(png_header(10_000, 5_000)), "{tmp}/a.png is invalid: 10000x5000 pixels is over"),
    ("blank page", a_file(BLANK), "{tmp}/a.png is invalid: no digit found"),
    ("blank number", lambda tmp: ["--number", *a_file(BLANK)(tmp)], "{tmp}/a.png is invalid: no digit found"),
    ("top", arguments("--top", "11", "{tmp}/empty"), "--top 11 is invalid: give 1 to 10, its classes"),
    ("save-inputs", lambda tmp: ["--save-inputs", *a_file(b"", "f")(tmp), "a"], "--save-inputs {tmp}/f is"),
    ("format", arguments("--format", "xml", "a.png"), "predict.py: argument --format: invalid choice: 'xml'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"), [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS]
)
def test_a_bad_input_is_one_line_naming_it_and_exit_status_2(
    predict: Callable[..., Result], tmp_path: Path, argv: Callable[[Path], list[str]], message: str
) -> None:
    result = predict(*argv(tmp_path))
    assert result.status == 2
    assert len(result.errors) == 1 and result.errors[0].startswith(f"error: {message.format(tmp=tmp_path)}")
    assert result.out == ""


def test_numbers_need_a_checkpoint_of_digits(
    trained_run: TrainedRun, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fashion = fashion_checkpoint(trained_run, tmp_path / "fashion.ckpt")
    with pytest.raises(SystemExit) as stop:
        script_module("predict.py").main([str(fashion), "--number", str(drawn(tmp_path, "a.png"))])
    assert stop.value.code == 2
    assert (
        capsys.readouterr().err
        == f"error: {fashion} is invalid for numbers: its classes are not digits (fashion_mnist)\n"
    )


def read_or_end(terminal: int) -> bytes:
    """What a pseudo-terminal holds, b"" at its end (Linux ends a read with EIO once its writer closed)."""
    try:
        return os.read(terminal, 1 << 16)
    except OSError:
        return b""


@pytest.mark.slow
def test_a_progress_bar_is_shown_on_a_terminal_for_many_images(
    trained_run: TrainedRun, tmp_path: Path, tiny_mnist: Path
) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    digit = encoded(Image.fromarray(mnist_digit(page(ring())).numpy()))  # MNIST-sized: quick to read
    for index in range(handwriting.PROGRESS_FROM + 1):
        (folder / f"{index:03}.png").write_bytes(digit)
    terminal, stderr = os.openpty()
    fcntl.ioctl(stderr, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns, as a window
    shown = bytearray()

    def read_terminal() -> None:  # while predict.py runs: a full terminal would block its writes
        while chunk := read_or_end(terminal):
            shown.extend(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    with open(os.devnull) as null:
        process = subprocess.run(
            [sys.executable, str(ROOT / "predict.py"), str(trained_run.best), str(folder)],
            env=user_environment(tiny_mnist), stdin=null, stdout=subprocess.PIPE, stderr=stderr, timeout=300,
        )  # fmt: skip
    os.close(stderr)  # the terminal's last writer: its reader then reads to the end
    reader.join(timeout=60)
    assert not reader.is_alive(), "the terminal was not read to its end"
    os.close(terminal)
    assert process.returncode == 0
    assert len(process.stdout.decode().splitlines()) == handwriting.PROGRESS_FROM + 1
    assert f"{handwriting.PROGRESS_FROM + 1}/{handwriting.PROGRESS_FROM + 1}".encode() in shown


def test_eval_scores_a_folder_of_labelled_images_read_as_predict_reads_them(
    trained_run: TrainedRun, model: InferenceModel, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    labelled = tmp_path / "labelled"
    files = {"0": ["zero", "ell"], "1": ["one"], "7": ["seven", "zero"]}
    paths = {
        label: [drawn(labelled / label, f"{name}.jpg", name) for name in names]
        for label, names in files.items()
    }
    (labelled / "7" / "notes.png").write_text("a note")
    truth = [int(label) for label, each in paths.items() for _ in each]
    probabilities = model.probabilities(
        torch.stack([mnist_digit(path) for each in paths.values() for path in each])
    )
    accuracy = (probabilities.argmax(dim=1) == torch.tensor(truth)).float().mean().item()
    loss = torch.nn.functional.nll_loss(probabilities.log(), torch.tensor(truth)).item()

    status = script_module("eval.py").main([str(trained_run.best), "--images", str(labelled)])
    out, err = capsys.readouterr()
    scores, per_class = out.splitlines()
    assert status == 2  # the note is listed, the other 5 images scored
    assert scores == f"{trained_run.best}: accuracy on 5 images of {labelled} {accuracy:.4f}, loss {loss:.4f}"
    assert per_class.startswith(f"per class ({trained_run.best}): 0: ")
    assert [entry.split(":")[0] for entry in per_class.split("): ")[1].split()[::2]] == ["0", "1", "7"]
    assert err == f"error: {labelled / '7' / 'notes.png'} is invalid: it is not an image ({ALLOWED})\n"

    (labelled / "x").mkdir()
    with pytest.raises(SystemExit) as stop:
        script_module("eval.py").main([str(trained_run.best), "--images", str(labelled)])
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        f"error: {labelled / 'x'} is invalid: x is not a label of the checkpoint's; "
        "name each subfolder by one of 0, 1, 2, 3, 4, 5, 6, 7, 8, 9\n"
    )
