"""How well a checkpoint reads "wild" digits: MNIST's test digits made to look like a user's images.

    python benchmarks/wild_digits.py CHECKPOINT --count 1000 --seed 0

Each test digit is written "with a pen on paper": inverted to dark ink on light paper (the paper
not pure white, the ink not pure black), 4 to 8 times larger, off centre on a bigger page. Then:

- mnist: the 28x28 digit itself, as a PNG (the preprocessing must leave it as it is);
- scan: a flat page, clean or slightly blurred, with mild noise, as PNG or JPEG of varying quality;
- photo: colour paper and ink, slightly rotated, under a lighting gradient with a shadow at one
  edge of the page, blurred, with sensor noise, as JPEG;
- numbers: four digits in a row on a scan-like page, with random gaps between their strokes, sizes
  and small vertical offsets; in TOUCHING_CHANCE of the numbers two neighbours touch. A number is
  right only when all four digits are, no more, no fewer.

Every image goes through `mnist_format.mnist_digit` (`written_numbers.mnist_digits_of_number`
for numbers, with the classifier judging where touching digits are cut) and the checkpoint's
classifier; an image where no digit is found counts as wrong. Prints a Markdown table: condition,
images, accuracy, the first row the checkpoint's accuracy on the same test digits as they are. The
images are the same for the same --seed and --count.
"""

import argparse
import io
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torchvision.datasets import MNIST

from mnist_classifier.datasets import default_data_dir
from mnist_classifier.errors import BadInput
from mnist_classifier.mnist_format import mnist_digit
from mnist_classifier.written_numbers import mnist_digits_of_number

CONDITIONS = ("mnist", "scan", "photo")
NUMBER_LENGTH = 4
TOUCHING_CHANCE = 0.15  # of a number having two digits that touch
STROKE = 0.5  # ink coverage at a pen stroke's edge
TITLES = {
    "reference": "MNIST 28x28 as given (no preprocessing)",
    "mnist": "MNIST 28x28 as PNG",
    "scan": "scan-like",
    "photo": "photo-like",
    "numbers": f"{NUMBER_LENGTH}-digit numbers, all digits right",
    "touching": "... of which two digits touch",
}
Classify = Callable[[torch.Tensor], torch.Tensor]  # uint8 digits [N, 28, 28] -> probabilities [N, 10]


def as_array(digit: torch.Tensor | np.ndarray) -> np.ndarray:
    """An MNIST digit (uint8 [28, 28], light on dark) as ink coverage float [28, 28] in [0, 1]."""
    return np.asarray(digit, dtype=np.float32) / 255


def enlarged(digit: np.ndarray, scale: float) -> np.ndarray:
    """The digit's ink cropped to its box and enlarged smoothly, as a pen's stroke drawn that large."""
    rows, columns = np.nonzero(digit)
    ink = digit[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    image = Image.fromarray(ink, mode="F").resize(size, Image.Resampling.BICUBIC)
    return np.clip(np.asarray(image), 0, 1)


def page_with(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The ink placed off centre on a page 1.5 to 3 times its size each way (coverage, 0 = paper)."""
    height, width = (round(side * rng.uniform(1.5, 3)) for side in ink.shape)
    page = np.zeros((height, width), dtype=np.float32)
    top = rng.integers(0, height - ink.shape[0] + 1)
    left = rng.integers(0, width - ink.shape[1] + 1)
    page[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    return page


def pen_on_paper(coverage: np.ndarray, rng: np.random.Generator, colour: bool) -> np.ndarray:
    """Ink coverage as dark ink on light paper, float RGB [H, W, 3]: off-white paper, not quite black ink."""
    paper = rng.uniform(0.78, 0.96) + (rng.uniform(-0.04, 0.04, 3) if colour else np.zeros(3))
    ink = rng.uniform(0.05, 0.35) + (rng.uniform(-0.05, 0.15, 3) * [1, 1, 2] if colour else np.zeros(3))
    return paper - coverage[..., None] * (paper - ink)


def blurred(page: np.ndarray, sigma: float) -> np.ndarray:
    """The page out of focus by a Gaussian blur of `sigma` pixels."""
    return ndimage.gaussian_filter(page, (sigma, sigma, 0))


def noisy(page: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """The page with Gaussian sensor noise."""
    return page + rng.normal(0, sigma, page.shape)


def lit(page: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The page under uneven light: a gradient across it in a random direction and a shadow at one edge."""
    height, width = page.shape[:2]
    rows, columns = np.mgrid[0:height, 0:width] / max(height, width)
    angle = rng.uniform(0, 2 * np.pi)
    slope = np.cos(angle) * columns + np.sin(angle) * rows
    light = 1 - rng.uniform(0.2, 0.45) * (slope - slope.min()) / max(np.ptp(slope), 1e-6)
    edge = rng.integers(4)
    distance = [columns, rows, columns.max() - columns, rows.max() - rows][edge]
    band = rng.uniform(0.05, 0.25) * [width, height][edge % 2] / max(height, width)
    softness = rng.uniform(0.005, 0.03)
    shadow = 1 / (1 + np.exp((distance - band) / softness))  # 1 inside the shadow, 0 past its edge
    light *= 1 - rng.uniform(0.25, 0.5) * shadow
    return page * light[..., None]


def rotated(page: np.ndarray, degrees: float) -> np.ndarray:
    """The page slightly rotated, the corners filled with paper."""
    paper = np.median(page.reshape(-1, page.shape[2]), axis=0)
    turned = ndimage.rotate(page - paper, degrees, axes=(1, 0), reshape=True, order=1, mode="constant")
    return turned + paper


def saved(page: np.ndarray, rng: np.random.Generator, jpeg_chance: float) -> Image.Image:
    """The page as a user's file: JPEG of quality 40 to 95 with `jpeg_chance`, else PNG, decoded again."""
    pixels = np.rint(np.clip(page, 0, 1) * 255).astype(np.uint8)
    image = Image.fromarray(pixels[..., 0] if np.ptp(pixels, axis=2).max() == 0 else pixels)
    file = io.BytesIO()
    if rng.random() < jpeg_chance:
        image.save(file, "JPEG", quality=int(rng.integers(40, 96)))
    else:
        image.save(file, "PNG")
    return Image.open(io.BytesIO(file.getvalue()))


def scanned(coverage: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A flat grey scan of the ink: clean or slightly blurred, with or without mild noise, PNG or JPEG."""
    page = pen_on_paper(coverage, rng, colour=False)
    if rng.random() < 0.5:
        page = blurred(page, rng.uniform(0.5, 1.5))
    if rng.random() < 0.5:
        page = noisy(page, rng.uniform(0.005, 0.03), rng)
    return saved(page, rng, jpeg_chance=0.6)


def photographed(coverage: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A colour photo of the ink: rotated a little, uneven light and a shadow, blur, sensor noise, JPEG."""
    page = rotated(pen_on_paper(coverage, rng, colour=True), rng.uniform(-8, 8))
    page = noisy(blurred(lit(page, rng), rng.uniform(0.5, 2.0)), rng.uniform(0.01, 0.04), rng)
    return saved(page, rng, jpeg_chance=1)


def wild_digit(digit: torch.Tensor | np.ndarray, condition: str, rng: np.random.Generator) -> Image.Image:
    """An MNIST digit (uint8 [28, 28]) as a user's image in a condition: "mnist", "scan" or "photo"."""
    coverage = as_array(digit)
    if condition == "mnist":
        return saved(coverage[..., None].repeat(3, axis=2), rng, jpeg_chance=0)
    page = page_with(enlarged(coverage, rng.uniform(4, 8)), rng)
    if condition == "scan":
        return scanned(page, rng)
    if condition == "photo":
        return photographed(page, rng)
    raise ValueError(f"condition={condition!r} is invalid: give one of {', '.join(CONDITIONS)}")


def beside(row: np.ndarray, ink: np.ndarray, top: int, gap: int) -> int:
    """The column at which to write `ink` (its top at row `top`) so that it is `gap` pixels right of the
    ink already in the row where they share lines: touching at 0, the strokes overlapping below it."""
    written = row[top : top + ink.shape[0]] > STROKE
    new = ink > STROKE
    shared = written.any(axis=1) & new.any(axis=1)
    if not shared.any():
        return int(np.nonzero(row.any(axis=0))[0].max(initial=-1)) + 1 + gap
    right_edges = written.shape[1] - 1 - np.argmax(written[:, ::-1], axis=1)
    left_edges = np.argmax(new, axis=1)
    return max(0, int((right_edges - left_edges)[shared].max()) + 1 + gap)


def row_of(digits: list[np.ndarray], rng: np.random.Generator, touching: bool) -> np.ndarray:
    """The digits written left to right as ink coverage, each at its own size and a little above or below
    the line, with random gaps between their strokes; two neighbours, drawn at random, touch if `touching`."""
    scale = rng.uniform(4, 6)
    inks = [enlarged(digit, scale * rng.uniform(0.85, 1.15)) for digit in digits]
    height = max(ink.shape[0] for ink in inks)
    touches = rng.integers(1, len(inks)) if touching else 0  # the digit touching the one before it
    row = np.zeros((round(1.4 * height), sum(ink.shape[1] for ink in inks) + height * len(inks)), np.float32)
    for index, ink in enumerate(inks):
        top = round((row.shape[0] - ink.shape[0]) / 2 + height * rng.uniform(-0.1, 0.1))
        gap = round(height * (-rng.uniform(0, 0.03) if index == touches else rng.uniform(0.05, 0.4)))
        left = beside(row, ink, top, gap) if index else 0
        window = row[top : top + ink.shape[0], left : left + ink.shape[1]]
        np.maximum(window, ink, out=window)
    return row[:, : np.nonzero(row.any(axis=0))[0].max() + 1]


def wild_number(
    digits: list[torch.Tensor] | list[np.ndarray], rng: np.random.Generator, touching: bool = False
) -> Image.Image:
    """MNIST digits (uint8 [28, 28] each) written as one number in a row on a scan-like page; two of them
    touch if `touching`."""
    return scanned(page_with(row_of([as_array(digit) for digit in digits], rng, touching), rng), rng)


def mnist_test_set(data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST's 10,000 test digits (uint8 [N, 28, 28]) and their labels."""
    test_set = MNIST(str(data_dir), train=False)
    return test_set.data, test_set.targets


def digits_found(
    read: Callable[[Image.Image], torch.Tensor | list[torch.Tensor]], image: Image.Image
) -> list[torch.Tensor]:
    """The digits `read` finds in the image, none where it finds no digit (a miss, not a crash)."""
    try:
        found = read(image)
    except BadInput:
        return []
    return found if isinstance(found, list) else [found]


def digit_accuracy(
    classify: Classify, condition: str, digits: torch.Tensor, labels: torch.Tensor, seed: int
) -> float:
    """The fraction of the digits read right when each is made wild in `condition` and preprocessed."""
    rng = np.random.default_rng([seed, CONDITIONS.index(condition)])
    right = 0
    for digit, label in zip(digits, labels.tolist(), strict=True):
        found = digits_found(mnist_digit, wild_digit(digit, condition, rng))
        right += len(found) == 1 and classify(torch.stack(found)).argmax(dim=1).tolist() == [label]
    return right / len(digits)


def number_accuracies(
    classify: Classify, digits: torch.Tensor, labels: torch.Tensor, seed: int
) -> dict[str, tuple[int, float]]:
    """How many numbers (rows of NUMBER_LENGTH of the digits), and the fraction read entirely right: all
    of them, and those with two digits touching."""
    rng = np.random.default_rng([seed, len(CONDITIONS)])
    outcomes: dict[str, list[bool]] = {"numbers": [], "touching": []}
    for start in range(0, len(digits) - NUMBER_LENGTH + 1, NUMBER_LENGTH):
        touching = bool(rng.random() < TOUCHING_CHANCE)
        image = wild_number(list(digits[start : start + NUMBER_LENGTH]), rng, touching)
        found = digits_found(partial(mnist_digits_of_number, judge=classify), image)
        truth = labels[start : start + NUMBER_LENGTH].tolist()
        right = len(found) == NUMBER_LENGTH and classify(torch.stack(found)).argmax(dim=1).tolist() == truth
        outcomes["numbers"].append(right)
        if touching:
            outcomes["touching"].append(right)
    return {
        name: (len(rights), float(np.mean(rights)) if rights else float("nan"))
        for name, rights in outcomes.items()
    }


def accuracies(
    classify: Classify, digits: torch.Tensor, labels: torch.Tensor, count: int, seed: int
) -> dict[str, tuple[int, float]]:
    """Per condition: how many images, and the accuracy, on `count` test digits drawn by `seed`; first the
    accuracy on the digits themselves, for reference."""
    chosen = torch.from_numpy(np.random.default_rng(seed).permutation(len(digits))[:count])
    digits, labels = digits[chosen], labels[chosen]  # fewer than `count` where the test set is smaller
    results = {"reference": (len(digits), (classify(digits).argmax(dim=1) == labels).float().mean().item())}
    for condition in CONDITIONS:
        results[condition] = (len(digits), digit_accuracy(classify, condition, digits, labels, seed))
    return results | number_accuracies(classify, digits, labels, seed)


def table(results: dict[str, tuple[int, float]]) -> str:
    """The results as a Markdown table."""
    lines = ["| condition | images | accuracy |", "|---|---:|---:|"]
    lines += [
        f"| {TITLES[name]} | {count:,} | {accuracy:.2%} |" for name, (count, accuracy) in results.items()
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="<run dir>/checkpoints/<file>.ckpt")
    parser.add_argument("--count", type=int, default=1000, help="test digits per condition")
    parser.add_argument("--seed", type=int, default=0, help="which digits, and how they are made wild")
    parser.add_argument(
        "--data-dir", type=Path, help="holds MNIST/raw/ (default: the checkpoint's data set's, as training)"
    )
    args = parser.parse_args(argv)
    if not NUMBER_LENGTH <= args.count <= 10_000:
        parser.error(f"--count {args.count} is invalid: give {NUMBER_LENGTH} to 10,000 digits")
    torch.set_num_threads(1)
    # imported here: it brings Lightning, seconds that the generator's users (the tests) need not wait
    from mnist_classifier.inference import load_for_inference

    model = load_for_inference(args.checkpoint)
    digits = mnist_test_set(args.data_dir or default_data_dir(model.dataset))
    print(table(accuracies(model.probabilities, *digits, args.count, args.seed)))


if __name__ == "__main__":
    main()
