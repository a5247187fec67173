"""Serve a page to draw digits on, and a JSON API, with a checkpoint: python serve.py CKPT.

Open http://127.0.0.1:8000/ and draw a digit with the mouse or a finger (or choose a photo): the page
shows the label, the three likeliest with their probabilities, and the 28x28 the net saw. The API:

    curl -F image=@photo.jpg http://127.0.0.1:8000/api/predict

answers {"label", "probability", "top": [3 x {"label", "probability"}], "input": <the 28x28, a PNG data
URL>}. Images go through the same preprocessing as predict.py's; a bad upload is answered 4xx with
{"detail": "<one line>"} and a body over --max-upload-mb with 413. --port 0 picks a free port (the log
says which). Serves until Ctrl+C.
"""

import sys
from pathlib import Path

from mnist_classifier.errors import ArgumentParser, BadInput, entry_point, existing_file, reading_input


@entry_point
def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="serve.py", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, metavar="CKPT", help="a checkpoint file")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="the port (default: 8000; 0: a free one)")
    parser.add_argument(
        "--max-upload-mb", type=float, default=20, help="the largest request body (default: 20)"
    )
    args = parser.parse_args(argv)
    existing_file(args.checkpoint, "checkpoint file")
    if not 0 <= args.port <= 65535:
        raise BadInput(f"--port {args.port} is invalid: give 0 to 65535")
    if args.max_upload_mb <= 0:
        raise BadInput(f"--max-upload-mb {args.max_upload_mb} is invalid: give a number of MB > 0")

    import uvicorn

    from mnist_classifier.inference import load_for_inference
    from mnist_classifier.serving import create_app

    with reading_input():
        model = load_for_inference(args.checkpoint)
    app = create_app(model, max_upload_bytes=round(args.max_upload_mb * 2**20))
    uvicorn.run(app, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
