"""The README's picture of a user's images beside what the net saw: photo- and scan-like pages of MNIST
test digits and a 4-digit number (made as benchmarks/wild_digits.py makes them), the 28x28 digits that
MNIST's preprocessing finds in them, and what a checkpoint reads.

    python scripts/handwriting_figure.py CKPT --out docs/screenshots/handwriting.png

The digits are the first of MNIST's test set in the order --seed draws, not chosen by how well they
are read.
"""

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the generator of wild digits, a script beside the others

from wild_digits import mnist_test_set, wild_digit, wild_number  # noqa: E402

from mnist_classifier.datasets import default_data_dir  # noqa: E402
from mnist_classifier.errors import BadInput  # noqa: E402
from mnist_classifier.handwriting import read_digits, read_numbers  # noqa: E402
from mnist_classifier.inference import load_for_inference  # noqa: E402

ROWS = (
    ("photo", "a photo"),
    ("photo", "a photo"),
    ("scan", "a scan"),
    ("number", "a number, read left to right"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="<run dir>/checkpoints/<file>.ckpt")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots" / "handwriting.png")
    parser.add_argument("--seed", type=int, default=0, help="which test digits, and how they are made wild")
    parser.add_argument("--data-dir", type=Path, help="the folder holding MNIST/raw/ (default: as training)")
    args = parser.parse_args()
    model = load_for_inference(args.checkpoint)
    digits, labels = mnist_test_set(args.data_dir or default_data_dir(model.dataset))
    rng = np.random.default_rng(args.seed)
    order = iter(torch.from_numpy(rng.permutation(len(digits))).tolist())

    figure, axes = plt.subplots(len(ROWS), 2, figsize=(7.5, 2.3 * len(ROWS)), width_ratios=[1.4, 1])
    for (condition, title), (left, right) in zip(ROWS, axes, strict=True):
        chosen = [next(order) for _ in range(4 if condition == "number" else 1)]
        truth = "".join(str(labels[index].item()) for index in chosen)
        if condition == "number":
            image = wild_number([digits[index] for index in chosen], rng)
            (reading,) = read_numbers(model, [(title, image)])
        else:
            image = wild_digit(digits[chosen[0]], condition, rng)
            (reading,) = read_digits(model, [(title, image)])
        if isinstance(reading, BadInput):
            sys.exit(f"error: {reading}")
        left.imshow(image, cmap="gray" if image.mode == "L" else None)
        left.set_title(f"{title} {truth} ({image.width}x{image.height} pixels)", fontsize=10)
        right.imshow(
            torch.cat(list(reading.seen), dim=1), cmap="gray", interpolation="nearest", vmin=0, vmax=255
        )
        best = reading.top[0]
        right.set_title(f"the 28x28 the net saw: read {best.label} ({best.probability:.1%})", fontsize=10)
        for axis in (left, right):
            axis.set_xticks([])
            axis.set_yticks([])
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
