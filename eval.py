"""Test checkpoints on the official test set: python eval.py CKPT [CKPT ...] [--data-dir DIR].

Each checkpoint carries what it needs (its net, data set, image size and normalisation), so it can
be evaluated anywhere. Several checkpoints are also scored as an ensemble: the mean of their
probabilities.
"""

import sys
from pathlib import Path

from mnist_classifier.errors import ArgumentParser, entry_point, reading_input


@entry_point
def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="eval.py", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", type=Path, nargs="+", metavar="CKPT", help="checkpoint files")
    parser.add_argument(
        "--data-dir", type=Path, help="the folder holding <data set>/raw/ (default: as training)"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    args = parser.parse_args(argv)

    from mnist_classifier.checkpoints import load_for_inference
    from mnist_classifier.datasets import DATASETS, default_data_dir, read_split
    from mnist_classifier.evaluation import ensemble_probabilities, score

    with reading_input():
        models = [load_for_inference(path, args.device) for path in args.checkpoints]
        dataset = DATASETS[models[0].dataset]
        images, labels = read_split(args.data_dir or default_data_dir(dataset), dataset, train=False)
        probabilities = ensemble_probabilities(models, images)
    names = [str(model.path) for model in models] + (
        [f"ensemble of {len(models)}"] if len(models) > 1 else []
    )
    results = [score(each, labels) for each in probabilities]
    for name, result in zip(names, results, strict=True):
        print(f"{name}: test accuracy {result.accuracy:.4f}, loss {result.loss:.4f}")
    classes = zip(dataset.classes, results[-1].per_class, strict=True)
    print(f"per class ({names[-1]}): " + "  ".join(f"{label}: {value:.4f}" for label, value in classes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
