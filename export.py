"""Export a trained checkpoint: python export.py CHECKPOINT [--out DIR] [--formats torchscript onnx].

Writes the network (without Lightning) as TorchScript (model.pt) and ONNX (model.onnx, with the
`onnx` extra: pip install -e ".[onnx]"), plus preprocessing.json: what the input must look like.
Both take a float batch [N, 1, S, S] of images normalised as in training and return the logits of
the ten digits; the batch size is free.
"""

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

from mnist_classifier.data import MNISTDataModule
from mnist_classifier.experiment import trained_classifier

FORMATS = ("torchscript", "onnx")


def export_torchscript(net: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings(category=FutureWarning, action="ignore"):  # torch.jit is deprecated
        torch.jit.trace(net, example).save(str(path))


def export_onnx(net: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    try:
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError as error:
        raise ValueError('ONNX export needs the onnx extra: pip install -e ".[onnx]"') from error
    batch = torch.export.Dim("batch")
    torch.onnx.export(
        net,
        (example,),
        str(path),
        dynamo=True,
        dynamic_shapes={"x": {0: batch}},
        input_names=["images"],
        output_names=["logits"],
        external_data=False,  # one file: the weights are small
        verbose=False,
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="<run dir>/checkpoints/<file>.ckpt")
    parser.add_argument("--out", type=Path, help="where to write (default: <run dir>/export)")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    args = parser.parse_args(argv)
    try:
        classifier, run, checkpoint = trained_classifier(args.checkpoint.resolve())
        out = args.out or args.checkpoint.resolve().parent.parent / "export"
        out.mkdir(parents=True, exist_ok=True)
        net = classifier.net.eval().to(memory_format=torch.contiguous_format)
        size = run.data.image_size
        example = torch.zeros(2, 1, size, size)
        normalisation = checkpoint[MNISTDataModule.__qualname__]
        preprocessing = {
            "input": f"float32 [N, 1, {size}, {size}]: (pixel / 255 - mean) / std",
            "resize": f"28x28 digits to {size}x{size} by {run.data.resize}",
            "mean": normalisation["mean"],
            "std": normalisation["std"],
            "output": "logits [N, 10] of the digits 0-9",
        }
        (out / "preprocessing.json").write_text(json.dumps(preprocessing, indent=2))
        exporters = {"torchscript": (export_torchscript, "model.pt"), "onnx": (export_onnx, "model.onnx")}
        for name in args.formats:
            export, filename = exporters[name]
            export(net, example, out / filename)
            print(f"{name}: {out / filename}")
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
