"""Export a trained checkpoint: python export.py CKPT [--out DIR] [--formats exported onnx torchscript].

Writes the network without Lightning, plus preprocessing.json (what the input must look like):

- exported (default): model.pt2, a torch.export ExportedProgram; load it with
  torch.export.load("model.pt2").module() in Python, or compile it ahead of time (AOTInductor);
- onnx (default): model.onnx, made from that same exported program, for onnxruntime and other
  runtimes (needs the onnx extra: pip install -e ".[onnx]");
- torchscript (on request only): model.pt, torch.jit's format, which PyTorch deprecates in favour
  of torch.export; for a C++ runtime that still loads TorchScript.

Each takes a float batch [N, 1, S, S] of images normalised as in training, of any batch size, and
returns the logits of the classes.
"""

import json
import sys
import warnings
from pathlib import Path

from mnist_classifier.errors import (
    ArgumentParser,
    BadInput,
    entry_point,
    existing_file,
    exit_with,
    reading_input,
    writable_folder,
)
from mnist_classifier.trust import add_trust_option

FORMATS = ("exported", "onnx", "torchscript")
DEFAULT_FORMATS = ("exported", "onnx")
FILES = {"exported": "model.pt2", "onnx": "model.onnx", "torchscript": "model.pt"}


def exported_program(net, example):
    """The net as an ExportedProgram whose batch size is free."""
    import torch

    batch = torch.export.Dim("batch", min=1)
    return torch.export.export(net, (example,), dynamic_shapes={"x": {0: batch}})


def export_exported(program, net, example, path: Path) -> None:
    import torch

    torch.export.save(program, path)


def export_onnx(program, net, example, path: Path) -> None:
    import torch

    try:
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError as error:
        raise BadInput(
            '--formats onnx is invalid here: it needs the onnx extra, pip install -e ".[onnx]"'
        ) from error
    torch.onnx.export(
        program,
        f=str(path),
        dynamo=True,
        input_names=["images"],
        output_names=["logits"],
        external_data=False,  # one file: the weights are small
        verbose=False,
    )


def export_torchscript(program, net, example, path: Path) -> None:
    import torch

    with warnings.catch_warnings(category=FutureWarning, action="ignore"):  # deprecated: the help says so
        torch.jit.trace(net, example).save(str(path))


EXPORTERS = {"exported": export_exported, "onnx": export_onnx, "torchscript": export_torchscript}


@entry_point
def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="export.py", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, metavar="CKPT", help="a checkpoint file")
    parser.add_argument(
        "--out", type=Path, help="where to write (default: export/ beside the checkpoint's folder)"
    )
    parser.add_argument(
        "--formats",
        nargs="+",
        choices=FORMATS,
        default=list(DEFAULT_FORMATS),
        help="exported (model.pt2) and onnx by default; torchscript (model.pt) on request: PyTorch "
        "deprecates it for torch.export",
    )
    add_trust_option(parser)
    args = parser.parse_args(argv)
    existing_file(args.checkpoint, "checkpoint file")
    out = args.out or args.checkpoint.resolve().parent.parent / "export"
    writable_folder(out, f"--out {out}")

    import torch

    from mnist_classifier.inference import load_for_inference

    with reading_input():
        model = load_for_inference(args.checkpoint, trusted=args.trust)
    example = torch.zeros(2, 1, model.image_size, model.image_size)
    program = exported_program(model.net, example)
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
    for name in dict.fromkeys(args.formats):
        EXPORTERS[name](program, model.net, example, out / FILES[name])
        print(f"{name}: {out / FILES[name]}")
    return 0


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))
