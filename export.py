"""Export a trained checkpoint: python export.py CKPT [--out DIR] [--formats torchscript onnx].

Writes the network (without Lightning) as TorchScript (model.pt) and ONNX (model.onnx, with the
`onnx` extra: pip install -e ".[onnx]"), plus preprocessing.json: what the input must look like.
Both take a float batch [N, 1, S, S] of images normalised as in training and return the logits of
the classes; the batch size is free.
"""

import json
import sys
import warnings
from pathlib import Path

from mnist_classifier.errors import ArgumentParser, BadInput, entry_point, existing_file, reading_input

FORMATS = ("torchscript", "onnx")


def export_torchscript(net, example, path: Path) -> None:
    import torch

    with warnings.catch_warnings(category=FutureWarning, action="ignore"):  # torch.jit is deprecated
        torch.jit.trace(net, example).save(str(path))


def export_onnx(net, example, path: Path) -> None:
    import torch

    try:
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError as error:
        raise BadInput(
            '--formats onnx is invalid here: it needs the onnx extra, pip install -e ".[onnx]"'
        ) from error
    torch.onnx.export(
        net,
        (example,),
        str(path),
        dynamo=True,
        dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
        input_names=["images"],
        output_names=["logits"],
        external_data=False,  # one file: the weights are small
        verbose=False,
    )


@entry_point
def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="export.py", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, metavar="CKPT", help="a checkpoint file")
    parser.add_argument(
        "--out", type=Path, help="where to write (default: export/ beside the checkpoint's folder)"
    )
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    args = parser.parse_args(argv)
    existing_file(args.checkpoint, "checkpoint file")

    import torch

    from mnist_classifier.inference import load_for_inference

    with reading_input():
        model = load_for_inference(args.checkpoint)
    out = args.out or args.checkpoint.resolve().parent.parent / "export"
    out.mkdir(parents=True, exist_ok=True)
    size = model.image_size
    preprocessing = {
        "input": f"float32 [N, 1, {size}, {size}]: (pixel / 255 - mean) / std",
        "resize": f"28x28 images to {size}x{size} by {model.resize}",
        "mean": model.mean,
        "std": model.std,
        "output": f"logits [N, {len(model.classes)}] of the classes",
        "classes": list(model.classes),
    }
    (out / "preprocessing.json").write_text(json.dumps(preprocessing, indent=2))
    example = torch.zeros(2, 1, size, size)
    exporters = {"torchscript": (export_torchscript, "model.pt"), "onnx": (export_onnx, "model.onnx")}
    for name in args.formats:
        export, filename = exporters[name]
        export(model.net, example, out / filename)
        print(f"{name}: {out / filename}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
