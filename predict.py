"""Classify image files with a trained checkpoint: python predict.py CHECKPOINT IMAGE [IMAGE ...].

Each PNG or JPEG, of any size, is converted as the training data was: grayscale, 28x28 as MNIST's
digits, then the run's resize to its image size and its normalisation. Like MNIST's, digits should
be light on a dark background. Prints one line per image: path, label and probability.
"""

import argparse
import sys
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.io import ImageReadMode, decode_image

from mnist_classifier.data import MNIST_SIZE, MNISTDataModule, to_inputs
from mnist_classifier.experiment import trained_classifier


def read_digit(path: Path) -> torch.Tensor:
    """A PNG or JPEG file as a uint8 MNIST-sized image [28, 28]."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        image = decode_image(str(path), mode=ImageReadMode.GRAY)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"{path} is not an image: torchvision decodes PNG and JPEG files") from error
    return TF.resize(image, [MNIST_SIZE, MNIST_SIZE], antialias=True)[0]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="<run dir>/checkpoints/<file>.ckpt")
    parser.add_argument("images", type=Path, nargs="+", help="PNG or JPEG files")
    args = parser.parse_args(argv)
    try:
        classifier, run, checkpoint = trained_classifier(args.checkpoint.resolve())
        normalisation = checkpoint[MNISTDataModule.__qualname__]
        digits = torch.stack([read_digit(image) for image in args.images])
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    inputs = TF.normalize(
        to_inputs(digits, run.data.image_size, run.data.resize),
        [normalisation["mean"]],
        [normalisation["std"]],
    )
    with torch.inference_mode():
        probabilities, labels = classifier.eval()(inputs).softmax(dim=1).max(dim=1)
    for image, label, probability in zip(args.images, labels.tolist(), probabilities.tolist(), strict=True):
        print(f"{image}\t{label}\t{probability:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
