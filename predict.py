"""Classify image files with a trained checkpoint: python predict.py CKPT IMAGE [IMAGE ...].

Each PNG or JPEG, of any size, is converted as the training data was: grayscale, 28x28 as MNIST's
digits, then the run's resize to its image size and its normalisation. Like MNIST's, digits should
be light on a dark background. Prints one line per image: path, label and probability.
"""

import sys
from pathlib import Path

from mnist_classifier.errors import ArgumentParser, BadInput, entry_point, reading_input


def read_digit(path: Path):
    """A PNG or JPEG file as a uint8 MNIST-sized image [28, 28]."""
    import torchvision.transforms.v2.functional as TF
    from torchvision.io import ImageReadMode, decode_image

    if not path.is_file():
        raise BadInput(f"{path} is invalid: no such file")
    try:
        image = decode_image(str(path), mode=ImageReadMode.GRAY)
    except (RuntimeError, ValueError) as error:
        raise BadInput(f"{path} is invalid: not an image (torchvision decodes PNG and JPEG files)") from error
    return TF.resize(image, [28, 28], antialias=True)[0]


@entry_point
def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="predict.py", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, metavar="CKPT", help="a checkpoint file")
    parser.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    args = parser.parse_args(argv)

    import torch

    from mnist_classifier.checkpoints import load_for_inference

    with reading_input():
        model = load_for_inference(args.checkpoint)
        digits = torch.stack([read_digit(image) for image in args.images])
    probabilities, labels = model.probabilities(digits).max(dim=1)
    for image, label, probability in zip(args.images, labels.tolist(), probabilities.tolist(), strict=True):
        print(f"{image}\t{model.classes[label]}\t{probability:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
