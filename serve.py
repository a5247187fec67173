"""Serve a page to draw digits on, and a JSON API, with a checkpoint: python serve.py CKPT.

Open http://127.0.0.1:8000/ and draw a digit with the mouse or a finger (or choose a photo): the page
shows the label, the three likeliest with their probabilities, and the 28x28 the net saw. The API:

    curl -F image=@photo.jpg http://127.0.0.1:8000/api/predict

answers {"label", "probability", "top": [3 x {"label", "probability"}], "input": <the 28x28, a PNG data
URL>}. Images go through the same preprocessing as predict.py's; a bad upload is answered 4xx with
{"detail": "<one line>"} and a body over --max-upload-mb with 413. --port 0 picks a free port (the log
says which); a port in use is refused at once, before the checkpoint is loaded. Serves until Ctrl+C
(exit status 0).
"""

import errno
import math
import socket
import sys
from pathlib import Path

from mnist_classifier.errors import ArgumentParser, BadInput, entry_point, existing_file, reading_input
from mnist_classifier.trust import add_trust_option


def check_can_listen(host: str, port: int) -> None:
    """BadInput unless host:port can be bound now, as uvicorn will bind it (every address the host names,
    SO_REUSEADDR on): a port in use is refused in one line before the checkpoint is loaded, not after it
    with uvicorn's log."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise BadInput(
            f"--host {host} is invalid: {error.strerror}; give an address of this machine"
        ) from None
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise BadInput(
                        f"--port {port} is invalid: it is in use; give another port, or 0 for a free one"
                    ) from None
                if error.errno == errno.EACCES:
                    raise BadInput(
                        f"--port {port} is invalid: it needs privileges; give a port above 1023, or 0"
                    ) from None
                raise BadInput(
                    f"--host {host} is invalid: {error.strerror}; give an address of this machine"
                ) from None


@entry_point
def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="serve.py", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, metavar="CKPT", help="a checkpoint file")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="the port (default: 8000; 0: a free one)")
    parser.add_argument(
        "--max-upload-mb", type=float, default=20, help="the largest request body (default: 20)"
    )
    add_trust_option(parser)
    args = parser.parse_args(argv)
    existing_file(args.checkpoint, "checkpoint file")
    if not 0 <= args.port <= 65535:
        raise BadInput(f"--port {args.port} is invalid: give 0 to 65535")
    if not (math.isfinite(args.max_upload_mb) and args.max_upload_mb > 0):  # argparse's float takes nan, inf
        raise BadInput(f"--max-upload-mb {args.max_upload_mb} is invalid: give a number of MB > 0")
    check_can_listen(args.host, args.port)

    import uvicorn

    from mnist_classifier.inference import load_for_inference
    from mnist_classifier.serving import create_app

    with reading_input():
        model = load_for_inference(args.checkpoint, trusted=args.trust)
    # rounded down: a body of the limit's bytes rounded up would be over the MB the user gave
    app = create_app(model, max_upload_bytes=math.floor(args.max_upload_mb * 2**20))
    uvicorn.run(app, host=args.host, port=args.port)  # Ctrl+C: shuts down and returns
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
