"""The CPU kernels' instruction set (MNIST_CPU_KERNELS, mnist_classifier.cpu_numerics): its cost in
speed, and whether a seed trains the same weights again under each setting.

    python benchmarks/cpu_kernels.py --threads 1         # speed: 20 rounds of 25 steps a setting
    python benchmarks/cpu_kernels.py --bitwise --runs 5  # short train.py runs a setting, their weights
    python benchmarks/cpu_kernels.py -- model=mlp        # Hydra overrides of the default recipe

Speed: the default recipe's training step (forward, loss, backward, optimizer step, with its
distortions; benchmarks/hand_loop.py) on the CPU, in a process for each setting, as the libraries
read the variables once. The two processes take turns, in the other order each round, so that a
machine whose speed drifts slows them alike (the idle one waits, its threads asleep); the ratio of
each round's pair, and their median, compare them. Bitwise: `python train.py seed=1` cut to
--train-batches batches and one epoch, --runs times under each setting (taking turns), and the
SHA-256 of each run's final weights (last.ckpt).
"""

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mnist_classifier.cpu_numerics import CPU_NUMERICS, SETTINGS, SWITCH
from mnist_classifier.errors import ArgumentParser, BadInput, entry_point

ROOT = Path(__file__).resolve().parents[1]
PAUSE = 0.3  # seconds before each turn, for the other process's waiting threads to stop spinning


def environment(setting: str) -> dict[str, str]:
    """This process's environment with the kernels' variables set by `setting` alone."""
    env = {name: value for name, value in os.environ.items() if name not in (*CPU_NUMERICS, SWITCH)}
    env[SWITCH] = setting
    env.setdefault("MNIST_DATA_DIR", str(ROOT / "data"))
    return env | SETTINGS[setting]


def serve_steps(warm_up: int, threads: int, overrides: list[str]) -> None:
    """In this process: build the default recipe's loop, train `warm_up` steps, then for each number
    N read from stdin train N steps and print their seconds."""
    import torch
    from hand_loop import hand_loop_on_tensors
    from hydra.utils import instantiate

    from mnist_classifier.config import compose

    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as output_dir:
        cfg = compose(overrides, output_dir)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    loop = hand_loop_on_tensors(cfg, datamodule, torch.device("cpu"), augment=instantiate(cfg.augment))
    loop.train(warm_up)
    print(json.dumps({"aten": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}))
    for line in sys.stdin:
        start = time.perf_counter()
        loop.train(int(line))
        print(time.perf_counter() - start, flush=True)


class Runner:
    """A process of one setting that trains steps when asked."""

    def __init__(self, setting: str, args: argparse.Namespace) -> None:
        command = [sys.executable, __file__, "--one", "--warm-up", str(args.warm_up)]
        command += ["--threads", str(args.threads), "--", *args.overrides]
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
        self.process = subprocess.Popen(command, env=environment(setting), cwd=ROOT, **pipes)
        line = self.process.stdout.readline()
        if not line:
            sys.exit(f"error: the {setting} process failed (exit status {self.process.wait()})")
        self.about = json.loads(line)

    def seconds(self, steps: int) -> float:
        time.sleep(PAUSE)
        self.process.stdin.write(f"{steps}\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def trained_weights(setting: str, batches: int, folder: Path, overrides: list[str]) -> str:
    """SHA-256 of the final weights of a short `python train.py seed=1` under `setting`."""
    import torch

    command = [sys.executable, "train.py", "seed=1", "trainer.max_epochs=1", "logger=csv"]
    command += [f"+trainer.limit_train_batches={batches}", "+trainer.limit_val_batches=2"]
    command += ["+trainer.limit_test_batches=1", f"hydra.run.dir={folder}", *overrides]
    result = subprocess.run(command, env=environment(setting), capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"error: train.py under {setting} failed:\n{result.stderr[-3000:]}")
    checkpoint = torch.load(next(folder.rglob("last.ckpt")), map_location="cpu", weights_only=False)
    digest = hashlib.sha256()
    for name, tensor in sorted(checkpoint["state_dict"].items()):
        digest.update(name.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def bitwise(settings: list[str], batches: int, runs: int, overrides: list[str]) -> int:
    """Short train.py runs under each setting, taking turns: are their final weights bitwise equal?"""
    digests: dict[str, list[str]] = {setting: [] for setting in settings}
    with tempfile.TemporaryDirectory() as folder:
        for run in range(runs):
            for setting in settings:
                digest = trained_weights(setting, batches, Path(folder) / f"{setting}{run}", overrides)
                digests[setting].append(digest)
                print(f"{setting}, run {run + 1}: weights {digest[:16]}", flush=True)
    for setting, found in digests.items():
        kinds = len(set(found))
        print(
            f"{setting}: {runs} runs, {'all bitwise equal' if kinds == 1 else f'{kinds} different weights'}"
        )
    print(f"avx2 against native: {'equal' if set(digests['avx2']) == set(digests['native']) else 'differ'}")
    return 0


def cpu() -> str:
    with open("/proc/cpuinfo") as info:
        lines = info.read().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    wide = sorted(flag for flag in flags if flag in ("avx2", "avx512f", "avx512_bf16", "amx_tile"))
    return f"{model} ({', '.join(wide)}), {os.cpu_count()} CPUs"


@entry_point
def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="benchmarks/cpu_kernels.py", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="rounds, each setting once a round")
    parser.add_argument("--steps", type=int, default=25, help="training steps of a setting a round")
    parser.add_argument("--warm-up", type=int, default=50, help="steps of each setting before the rounds")
    parser.add_argument("--threads", type=int, default=0, help="torch's threads (0: its default)")
    parser.add_argument("--bitwise", action="store_true", help="train twice under each setting instead")
    parser.add_argument("--runs", type=int, default=2, help="train.py runs of each setting (--bitwise)")
    parser.add_argument("--train-batches", type=int, default=100, help="batches of the bitwise runs")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the default recipe, after --")
    args = parser.parse_args(argv)
    if min(args.rounds, args.steps, args.warm_up + 1, args.train_batches, args.runs) < 1:
        raise BadInput("--rounds, --steps, --runs and --train-batches must be 1 or more, --warm-up 0 or more")
    if args.one:
        serve_steps(args.warm_up, args.threads, args.overrides)
        return 0
    print(cpu())
    settings = list(SETTINGS)
    if args.bitwise:
        return bitwise(settings, args.train_batches, args.runs, args.overrides)
    runners = {setting: Runner(setting, args) for setting in settings}
    for setting, runner in runners.items():
        print(f"{setting}: ATen {runner.about['aten']}, {runner.about['threads']} threads")
    seconds: dict[str, list[float]] = {setting: [] for setting in settings}
    load = os.getloadavg()[0]
    for round_ in range(args.rounds):
        for setting in settings if round_ % 2 == 0 else reversed(settings):
            seconds[setting].append(runners[setting].seconds(args.steps))
    for runner in runners.values():
        runner.close()
    for setting in settings:
        print(f"{setting}: median {statistics.median(seconds[setting]) / args.steps * 1e3:.2f} ms a step")
    ratios = [avx2 / native for avx2, native in zip(seconds["avx2"], seconds["native"], strict=True)]
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    print(
        f"avx2 / native, a step, over {len(ratios)} pairs of {args.steps} steps: median "
        f"{statistics.median(ratios):.3f} (quartiles {quartiles[0]:.3f} to {quartiles[2]:.3f}); "
        f"the machine's load average {load:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
