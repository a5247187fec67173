"""Screenshots of a run's TensorBoard in headless Chromium: the Scalars, Images and HParams views.

    apt-get install chromium                       # Debian's; any Chromium or Chrome will do
    python scripts/dashboard_screenshots.py outputs --out docs/screenshots

Starts `tensorboard` over LOGDIR on a free loopback port, waits until it has read a run, saves one
PNG per view, and stops the server. Look at the pictures: a view that renders empty is a failure
this script cannot see.
"""

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# Each view by its URL fragment; the scalars view filtered to the curves of the three stages.
VIEWS = {"scalars": "scalars&tagFilter=train%7Cval%7Ctest%2Facc%24", "images": "images", "hparams": "hparams"}
# Headless on a machine without network: no sandbox (root), no GPU, no background connections.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_runs(base: str, server: subprocess.Popen, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(base + "/data/runs", timeout=10) as response:
                runs = json.load(response)
            if runs:
                return runs
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"error: tensorboard found no run under the log dir within {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logdir", type=Path, help="a run dir or a folder of runs (e.g. outputs)")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("google-chrome"))
    parser.add_argument("--size", default="1600,1000", help="window width,height in pixels")
    parser.add_argument("--wait-ms", type=int, default=15000, help="time the page gets to load its data")
    args = parser.parse_args()
    if not args.logdir.is_dir():
        sys.exit(f"error: log dir {args.logdir} does not exist")
    if not args.chromium:
        sys.exit("error: no chromium on PATH: install it (apt-get install chromium) or pass --chromium")
    args.out.mkdir(parents=True, exist_ok=True)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    tensorboard = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(args.logdir),
        "--port",
        str(port),
    ]
    server = subprocess.Popen([*tensorboard, "--host", "127.0.0.1"], stderr=subprocess.DEVNULL)
    try:
        print(f"runs: {', '.join(wait_for_runs(base, server, timeout=120))}")
        for view, fragment in VIEWS.items():
            path = args.out / f"{view}.png"
            with tempfile.TemporaryDirectory() as profile:
                settings = [f"--user-data-dir={profile}", f"--window-size={args.size}"]
                settings += [f"--virtual-time-budget={args.wait_ms}", f"--screenshot={path.resolve()}"]
                command = [args.chromium, *CHROMIUM_FLAGS, *settings, f"{base}/#{fragment}"]
                subprocess.run(command, check=True, capture_output=True, timeout=300)
            print(f"{view}: {path}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
