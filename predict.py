"""Read handwritten digits, or numbers, in images: python predict.py CKPT [--number] INPUT [INPUT ...].

An INPUT is an image file (PNG, JPEG, WebP, BMP or TIFF: a photo or a scan of any size, dark ink on
light paper or light on dark), a folder (its images, searched recursively) or a glob. Each image goes
through MNIST's own preprocessing (mnist_classifier.mnist_format): the digit's ink found, scaled to a
20-pixel box and centred by its mass in 28x28, as MNIST's digits were made. With --number, each image
is a row of digits, read left to right.

Prints one line per image, tab-separated: path, label, probability. --top K adds the next K-1 labels
and their probabilities; --format csv or json prints the same as CSV (with a header) or a JSON list.
For a number, the label is the number, its probability the product of its digits', and a column after
it gives each digit's label:probability. --save-inputs DIR writes the 28x28 that the net saw of each
image (a number's digits side by side) to DIR/<the image's path>.png.

A bad image (missing, not an image, truncated, over the pixel limit, without a digit) is one `error:`
line on stderr, after the other images are classified; the exit status is then 2.
"""

import csv
import io
import itertools
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from mnist_classifier.errors import (
    BAD_INPUT_STATUS,
    ArgumentParser,
    BadInput,
    entry_point,
    existing_file,
    exit_with,
    one_line,
    reading_input,
    writable_folder,
)
from mnist_classifier.trust import add_trust_option

if (
    TYPE_CHECKING
):  # imported where used: they bring torch, which --help and a bad command line need not wait for
    from mnist_classifier.handwriting import Guess, Reading

FORMATS = ("tsv", "csv", "json")


def seen_file(folder: Path, name: str) -> Path:
    """Where --save-inputs writes what the net saw of an image: the image's path under `folder`, with .png
    added; an absolute path from its root, `..` as `__` (nothing is written outside the folder)."""
    path = Path(name)
    parts = ["__" if part == ".." else part for part in path.parts if part != path.anchor]
    return folder.joinpath(*parts[:-1], parts[-1] + ".png")


def save_seen(reading: "Reading", folder: Path) -> None:
    """The digits the net saw of an image, side by side, as a PNG under `folder`."""
    import torch
    from PIL import Image

    path = seen_file(folder, reading.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(torch.cat(list(reading.seen), dim=1).numpy()).save(path)


def header(top: int, number: bool) -> list[str]:
    """The names of the columns that `fields` gives."""
    others = itertools.chain.from_iterable((f"label_{k}", f"probability_{k}") for k in range(2, top + 1))
    return ["path", "label", "probability", *(["digits"] if number else []), *others]


def fields(reading: "Reading", number: bool) -> list[str]:
    """A reading as a line's columns: path, label, probability, [digits,] then the next labels."""
    best, *others = reading.top
    digits = [" ".join(f"{digit.label}:{digit.probability:.4f}" for digit in reading.digits)]
    rest = itertools.chain.from_iterable((guess.label, f"{guess.probability:.4f}") for guess in others)
    return [reading.name, best.label, f"{best.probability:.4f}", *(digits if number else []), *rest]


def csv_line(columns: Iterable[str]) -> str:
    """Columns as one CSV line, quoted where they need it."""
    text = io.StringIO()
    csv.writer(text, lineterminator="").writerow(columns)
    return text.getvalue()


def guesses(each: "Iterable[Guess]") -> list[dict]:
    """Labels and their probabilities as JSON objects."""
    return [{"label": guess.label, "probability": round(guess.probability, 6)} for guess in each]


def record(reading: "Reading", number: bool) -> dict:
    """A reading as a JSON object: path, label, probability, [digits,] and the top labels."""
    best = reading.top[0]
    digits = {"digits": guesses(reading.digits)} if number else {}
    path = {"path": reading.name, "label": best.label, "probability": round(best.probability, 6)}
    return path | digits | {"top": guesses(reading.top)}


@entry_point
def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="predict.py", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, metavar="CKPT", help="a checkpoint file")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    parser.add_argument("--number", action="store_true", help="each image is a number: a row of digits")
    parser.add_argument("--top", type=int, default=1, metavar="K", help="print the K likeliest labels")
    parser.add_argument("--format", choices=FORMATS, default="tsv", help="tsv (default), csv or json")
    parser.add_argument("--save-inputs", type=Path, metavar="DIR", help="write the 28x28 the net saw here")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    add_trust_option(parser)
    args = parser.parse_args(argv)
    existing_file(args.checkpoint, "checkpoint file")
    if args.save_inputs:
        writable_folder(args.save_inputs, f"--save-inputs {args.save_inputs}")

    from tqdm import tqdm

    from mnist_classifier.handwriting import named_files, progress, read_digits, read_numbers
    from mnist_classifier.inference import inference_device, load_for_inference

    device = inference_device(args.device)
    with reading_input():
        model = load_for_inference(args.checkpoint, device, args.trust)
        if not 1 <= args.top <= len(model.classes):
            raise BadInput(f"--top {args.top} is invalid: give 1 to {len(model.classes)}, its classes")
        files = named_files(args.inputs)
        paths = [file for file in files if isinstance(file, Path)]
        shown = progress(paths)
        read = read_numbers if args.number else read_digits
        readings = read(model, ((str(path), path) for path in shown), args.top)

    bad = [file for file in files if isinstance(file, BadInput)]
    records = []
    if args.format == "csv":
        print(csv_line(header(args.top, args.number)))
    for reading in readings:
        if isinstance(reading, BadInput):
            bad.append(reading)
            continue
        if args.save_inputs:
            save_seen(reading, args.save_inputs)
        if args.format == "json":
            records.append(record(reading, args.number))
        else:  # printed as they come, above the progress bar
            columns = fields(reading, args.number)
            tqdm.write(csv_line(columns) if args.format == "csv" else "\t".join(columns), file=sys.stdout)
    shown.close()
    if args.format == "json":
        print("[\n" + ",\n".join(json.dumps(each) for each in records) + "\n]" if records else "[]")
    for error in bad:
        print(f"error: {one_line(error)}", file=sys.stderr)
    return BAD_INPUT_STATUS if bad else 0


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))
