"""A checkpoint reading people's handwriting: the image files a user names, each digit or number found
in them by MNIST's own preprocessing (mnist_format, written_numbers), and the model's likeliest readings.

predict.py, eval.py --images and serve.py all read images through here, so the net sees a user's
image alike whichever of them is given it. A bad image is returned in place of its reading, as the
BadInput that says why, so that the others are still read.
"""

import glob
import itertools
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from mnist_classifier.errors import BadInput
from mnist_classifier.image_files import ALLOWED, ImageSource
from mnist_classifier.inference import InferenceModel
from mnist_classifier.mnist_format import mnist_digit
from mnist_classifier.written_numbers import mnist_digits_of_number

# The files a folder's search finds: the suffixes of the formats image_files decodes.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
GLOB_CHARACTERS = "*?["
BATCH = 256  # images preprocessed, then classified together
PROGRESS_FROM = 100  # images: fewer are read before a progress bar would tell much

NamedImage = tuple[str, ImageSource]  # how errors and outputs name the image, and the image


@dataclass(frozen=True)
class Guess:
    """A label and the model's probability of it."""

    label: str
    probability: float


@dataclass(frozen=True)
class Reading:
    """What the model read in one image."""

    name: str
    top: list[Guess]  # the likeliest labels (for a number: the likeliest numbers), best first
    digits: list[Guess]  # each digit's likeliest label, left to right: one for an image of a digit
    seen: torch.Tensor  # the digits as the net saw them: uint8 [digits, 28, 28], light on black


def images_in(folder: Path) -> list[Path]:
    """The image files under a folder and its subfolders, sorted; BadInput if there are none."""
    found = sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)
    files = [path for path in found if path.is_file()]
    if not files:
        raise BadInput(f"{folder} is invalid: it holds no images ({ALLOWED})")
    return files


def named_files(arguments: Iterable[str]) -> list[Path | BadInput]:
    """The image files that a user's arguments name, in their order: a file as itself (reading it tells
    whether it is an image), a folder's images, a glob's matches (files or folders; a shell expands
    unquoted globs itself). A folder without images or a glob without matches is its BadInput."""
    found: list[Path | BadInput] = []
    for argument in arguments:
        matches = [Path(argument)]
        if not matches[0].exists() and any(character in argument for character in GLOB_CHARACTERS):
            matches = [Path(match) for match in sorted(glob.glob(argument, recursive=True))]
            if not matches:
                found.append(
                    BadInput(f"{argument} is invalid: it matches no files; give files, folders or globs")
                )
        for match in matches:
            try:
                found += images_in(match) if match.is_dir() else [match]
            except BadInput as error:
                found.append(error)
    return found


def labelled_files(folder: Path, classes: Sequence[str]) -> list[tuple[Path, int]]:
    """The images of a folder with one subfolder per label, each with its label's index in `classes`. A
    subfolder is named by its class, or by the class's index (a class name may hold a `/`)."""
    if not folder.is_dir():
        raise BadInput(f"{folder} is invalid: there is no such folder; give a folder of labelled images")
    indices = {str(index): index for index in range(len(classes))} | {
        name: index for index, name in enumerate(classes)
    }
    subfolders = sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not subfolders:
        raise BadInput(
            f"{folder} is invalid: it has no subfolders; give one subfolder per label ({', '.join(classes)})"
        )
    for subfolder in subfolders:
        if subfolder.name not in indices:
            raise BadInput(
                f"{subfolder} is invalid: {subfolder.name} is not a label of the checkpoint's; name each "
                f"subfolder by one of {', '.join(classes)}"
            )
    return [(path, indices[subfolder.name]) for subfolder in subfolders for path in images_in(subfolder)]


def progress(paths: Sequence[Path]) -> tqdm:
    """The paths, with a progress bar on stderr as they are taken when there are many and stderr is a
    terminal (a log file would get every redraw); close() it when done."""
    return tqdm(paths, unit="image", disable=len(paths) <= PROGRESS_FROM or not sys.stderr.isatty())


def mnist_inputs(images: Iterable[NamedImage]) -> Iterator[tuple[str, torch.Tensor] | BadInput]:
    """Each image's digit as MNIST's uint8 [28, 28] with the image's name, or why it has none."""
    for name, image in images:
        try:
            yield name, mnist_digit(image, name)
        except BadInput as error:
            yield error


def likeliest(probabilities: torch.Tensor, classes: Sequence[str], count: int) -> list[Guess]:
    """The `count` likeliest labels of one image's probabilities [classes], best first."""
    values, indices = probabilities.topk(min(count, len(classes)))
    return [
        Guess(classes[index], value) for index, value in zip(indices.tolist(), values.tolist(), strict=True)
    ]


def likeliest_numbers(probabilities: torch.Tensor, classes: Sequence[str], count: int) -> list[Guess]:
    """The `count` likeliest readings of a number from its digits' probabilities [digits, classes], best
    first, a reading's probability the product of its digits'.

    Exact by keeping the `count` likeliest readings of each prefix: a likeliest number's prefix is one
    of its length's likeliest, as the digits' probabilities multiply.
    """
    readings = [Guess("", 1.0)]
    for digit in probabilities:
        options = likeliest(digit, classes, count)
        extended = [
            Guess(a.label + b.label, a.probability * b.probability) for a in readings for b in options
        ]
        readings = sorted(extended, key=lambda reading: -reading.probability)[:count]
    return readings


def batches(images: Iterable[NamedImage], size: int) -> Iterator[list[NamedImage]]:
    """The images in lists of `size` (the last one shorter), taken as they come."""
    iterator = iter(images)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def read_digits(
    model: InferenceModel, images: Iterable[NamedImage], top: int = 1
) -> Iterator[Reading | BadInput]:
    """Each image's one digit as the model reads it, in the images' order, or the BadInput of an image
    that has none or is none. Images are taken BATCH at a time, then classified together."""
    for batch in batches(images, BATCH):
        found = list(mnist_inputs(batch))
        digits = [item for item in found if not isinstance(item, BadInput)]
        probabilities = iter(
            model.probabilities(torch.stack([digit for _, digit in digits])) if digits else []
        )
        for item in found:
            if isinstance(item, BadInput):
                yield item
                continue
            name, digit = item
            each = next(probabilities)
            yield Reading(
                name, likeliest(each, model.classes, top), likeliest(each, model.classes, 1), digit[None]
            )


def read_numbers(
    model: InferenceModel, images: Iterable[NamedImage], top: int = 1
) -> Iterator[Reading | BadInput]:
    """Each image's number, a row of digits read left to right, as the model reads it, or the BadInput of
    an image that has no digit or is none. A model whose classes are not digits is refused at once."""
    if not all(label.isdigit() for label in model.classes):
        raise BadInput(
            f"{model.path} is invalid for numbers: its classes are not digits ({model.dataset.name})"
        )
    return (number_reading(model, name, image, top) for name, image in images)


def number_reading(model: InferenceModel, name: str, image: ImageSource, top: int) -> Reading | BadInput:
    """One image's number as the model reads it; the model also judges where touching digits are cut."""
    try:
        digits = torch.stack(mnist_digits_of_number(image, name, judge=model.probabilities))
    except BadInput as error:
        return error
    probabilities = model.probabilities(digits)
    each = [likeliest(digit, model.classes, 1)[0] for digit in probabilities]
    return Reading(name, likeliest_numbers(probabilities, model.classes, top), each, digits)
