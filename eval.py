"""Test checkpoints on the official test set: python eval.py CKPT [CKPT ...] [--data-dir DIR].

Each checkpoint carries what it needs (its net, data set, image size and normalisation), so it can
be evaluated anywhere. Several checkpoints are also scored as an ensemble: the mean of their
probabilities. --images DIR scores a folder of labelled images instead, DIR/<label>/ holding the
images of each label (the checkpoint's class names, or their indices), each read as predict.py reads
it; an image that cannot be read is listed as an `error:` line, the others scored, and the exit
status is then 2.
"""

import sys
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
)
from mnist_classifier.trust import add_trust_option

if TYPE_CHECKING:
    import torch


def labelled_digits(
    folder: Path, classes: tuple[str, ...]
) -> tuple["torch.Tensor", "torch.Tensor", list[BadInput]]:
    """The digits of a folder of labelled images as MNIST's uint8 [N, 28, 28], their labels [N], and the
    BadInput of each image that has no digit or is none."""
    import torch

    from mnist_classifier.handwriting import labelled_files, mnist_inputs, progress

    files = labelled_files(folder, classes)
    shown = progress([path for path, _ in files])
    digits, labels, bad = [], [], []
    for (_, label), found in zip(files, mnist_inputs((str(path), path) for path in shown), strict=True):
        if isinstance(found, BadInput):
            bad.append(found)
        else:
            digits.append(found[1])
            labels.append(label)
    shown.close()
    if not digits:
        raise BadInput(f"{folder} is invalid: none of its {len(files)} images can be read, e.g. {bad[0]}")
    return torch.stack(digits), torch.tensor(labels), bad


@entry_point
def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="eval.py", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", type=Path, nargs="+", metavar="CKPT", help="checkpoint files")
    parser.add_argument(
        "--data-dir", type=Path, help="the folder holding <data set>/raw/ (default: as training)"
    )
    parser.add_argument("--images", type=Path, metavar="DIR", help="score DIR/<label>/ images instead")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    add_trust_option(parser)
    args = parser.parse_args(argv)
    for path in args.checkpoints:
        existing_file(path, "checkpoint file")

    from mnist_classifier.datasets import default_data_dir, read_split
    from mnist_classifier.inference import ensemble_probabilities, inference_device, load_for_inference, score

    device = inference_device(args.device)
    bad: list[BadInput] = []
    with reading_input():
        models = [load_for_inference(path, device, args.trust) for path in args.checkpoints]
        dataset = models[0].dataset
        if args.images:
            images, labels, bad = labelled_digits(args.images, models[0].classes)
        else:
            images, labels = read_split(args.data_dir or default_data_dir(dataset), dataset, train=False)
        probabilities = ensemble_probabilities(models, images)
    names = [str(model.path) for model in models] + (
        [f"ensemble of {len(models)}"] if len(models) > 1 else []
    )
    results = [score(each, labels) for each in probabilities]
    what = f"accuracy on {len(labels)} images of {args.images}" if args.images else "test accuracy"
    for name, result in zip(names, results, strict=True):
        print(f"{name}: {what} {result.accuracy:.4f}, loss {result.loss:.4f}")
    present = labels.unique().tolist()  # a folder of images may lack labels
    per_class = "  ".join(
        f"{dataset.classes[index]}: {results[-1].per_class[index]:.4f}" for index in present
    )
    print(f"per class ({names[-1]}): {per_class}")
    for error in bad:
        print(f"error: {one_line(error)}", file=sys.stderr)
    return BAD_INPUT_STATUS if bad else 0


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))
