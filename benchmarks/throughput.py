"""Training throughput side by side: the project's Lightning path, a hand-written loop, the tutorial.

    python benchmarks/throughput.py                      # LeNet and MLP, batch 64 and 256, 3 epochs
    python benchmarks/throughput.py --models lenet --batch-sizes 512 --epochs 5
    python benchmarks/throughput.py --paths lightning hand --augment affine   # + augmentation's cost

For each model and batch size, three ways to train on the same MNIST split:

1. lightning: `train.py`'s path, built by the same code from the same config (TensorBoard
   logger, checkpoints, progress bar, validation every epoch), overrides given after `--`;
2. hand: a plain PyTorch loop over the same in-memory tensors, same model, loss and optimizer;
3. tutorial: torchvision's MNIST with per-sample PIL Resize, ToTensor and Normalize through a
   DataLoader, as the PyTorch tutorials do.

Lightning and the hand loop take turns in one process, a hand epoch after each Lightning epoch,
and their ratio is the median over these pairs: on a machine whose speed drifts (a shared VM's
does: docs/benchmarks.md) only epochs seconds apart compare. With `--augment NAME`, each turn
also runs a hand epoch whose batches are distorted by `augment=NAME` (on their device, as the
data module does in training): the row `hand+NAME` gives its cost against the plain hand epoch.
The tutorial runs in a process of its own. Every epoch is training plus a pass over the 5,000
validation images (in batches of `data.eval_batch_size`). Seconds per epoch are the median over the
epochs after the first (warm-up) of every run; `--repeats N` runs each process N times,
interleaved. Images/s counts training images. Runs on the GPU when one is present (`--device cpu`
to stay on the CPU).
"""

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

import lightning as L
import torch
from hand_loop import HandLoop, hand_loop_on_tensors
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from mnist_classifier.batches import Batch
from mnist_classifier.config import compose
from mnist_classifier.cpu_time import OtherWork
from mnist_classifier.errors import ArgumentParser, BadInput, entry_point
from mnist_classifier.training import build

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("lightning", "hand", "tutorial")


class EpochTimer(L.Callback):
    """The seconds of each Lightning epoch, from its start to the start of the next one (or the end
    of training), so that everything Lightning does for the epoch counts: validation, and the
    checkpoints, which it saves after the other callbacks' epoch-end hooks. `between` runs between
    two epochs, outside the timing."""

    def __init__(self, between: Callable[[], None] | None = None) -> None:
        self.seconds: list[float] = []
        self.between = between
        self.start: float | None = None

    def _lap(self) -> None:
        if self.start is not None:
            self.seconds.append(time.perf_counter() - self.start)
            if self.between is not None:
                self.between()
        self.start = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._lap()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._lap()


# Each run gives the seconds of every epoch of each path it ran, and the training images an epoch.
Timings = tuple[dict[str, list[float]], int]


def epoch_images(train_count: int, batch_size: int, limit: int | None) -> int:
    """The training images of an epoch of at most `limit` batches."""
    return min(train_count, batch_size * limit) if limit else train_count


def run_lightning(
    cfg: DictConfig, device: torch.device, limit: int | None, paired: bool = False, augment: str | None = None
) -> Timings:
    """The Lightning path. Paired: with a hand-loop epoch after each Lightning epoch (and one with
    the augmentation `augment`, if given), in this process, so that a machine whose speed drifts
    slows them alike and their ratios hold."""
    datamodule, classifier, trainer = build(cfg)
    loops = {"hand": hand_loop_on_tensors(cfg, datamodule, device, limit)} if paired else {}
    if paired and augment:
        distortion = instantiate(compose([f"augment={augment}"], cfg.paths.output_dir).augment)
        loops[f"hand+{augment}"] = hand_loop_on_tensors(cfg, datamodule, device, limit, distortion)
    seconds: dict[str, list[float]] = {name: [] for name in loops}

    def between() -> None:
        for name, loop in loops.items():
            seconds[name].append(loop.epoch())

    timer = EpochTimer(between=between if loops else None)
    trainer.callbacks.append(timer)
    trainer.fit(classifier, datamodule=datamodule)
    return {"lightning": timer.seconds} | seconds, epoch_images(
        len(datamodule.train_set[1]), datamodule.batch_size, limit
    )


def run_hand(cfg: DictConfig, device: torch.device, limit: int | None) -> Timings:
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    loop = hand_loop_on_tensors(cfg, datamodule, device, limit)
    images = epoch_images(len(datamodule.train_set[1]), datamodule.batch_size, limit)
    return {"hand": [loop.epoch() for _ in range(cfg.trainer.max_epochs)]}, images


def run_tutorial(cfg: DictConfig, device: torch.device, limit: int | None) -> Timings:
    transform = transforms.Compose([
        transforms.Resize(cfg.data.image_size),
        transforms.ToTensor(),
        transforms.Normalize((0.1307,), (0.3081,)),
    ])  # fmt: skip
    mnist = datasets.MNIST(cfg.data.data_dir, train=True, download=False, transform=transform)
    # The same split as the data module: the tutorial pipeline only changes how batches are made.
    split = torch.Generator().manual_seed(cfg.data.split_seed)
    order = torch.randperm(len(mnist), generator=split)
    val_index, train_index = order[: cfg.data.val_size], order[cfg.data.val_size :]
    # As pytorch/examples' mnist/main.py: one worker and pinned memory on CUDA, none on the CPU.
    loader_args = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    size = cfg.data.batch_size
    train = DataLoader(Subset(mnist, train_index.tolist()), batch_size=size, shuffle=True, **loader_args)
    val = DataLoader(Subset(mnist, val_index.tolist()), batch_size=cfg.data.eval_batch_size, **loader_args)

    def limited(loader: DataLoader) -> Callable[[], Iterable[Batch]]:
        return lambda: itertools.islice(loader, limit)

    loop = HandLoop(cfg, device, limited(train), limited(val))
    images = epoch_images(len(train_index), size, limit)
    return {"tutorial": [loop.epoch() for _ in range(cfg.trainer.max_epochs)]}, images


def measure_one(run: str, model: str, batch_size: int, args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    overrides = [f"model={model}", f"data.batch_size={batch_size}", f"trainer.max_epochs={args.epochs}"]
    overrides += [f"trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}", "trainer.devices=1"]
    if args.limit_batches:
        overrides += [f"+trainer.limit_train_batches={args.limit_batches}"]
        overrides += [f"+trainer.limit_val_batches={args.limit_batches}", "+trainer.num_sanity_val_steps=0"]
    overrides += args.overrides
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    runners = {
        "paired": partial(run_lightning, paired=True, augment=args.augment),
        "lightning": run_lightning,
        "hand": run_hand,
        "tutorial": run_tutorial,
    }
    with tempfile.TemporaryDirectory() as output_dir:
        cfg = compose(overrides, output_dir)
        seconds, images = runners[run](cfg, device, args.limit_batches or None)
    return {
        "seconds": seconds,
        "images": images,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
    }


def measure(run: str, model: str, batch_size: int, args: argparse.Namespace) -> dict:
    """Run one measurement in a fresh process and return its figures."""
    command = [sys.executable, __file__, "--one", run, "--models", model, "--batch-sizes", str(batch_size)]
    command += ["--epochs", str(args.epochs), "--device", args.device]
    command += ["--limit-batches", str(args.limit_batches)] if args.limit_batches else []
    command += ["--augment", args.augment] if args.augment else []
    command += ["--", *args.overrides]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"error: {run} {model} batch {batch_size} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def after_warm_up(seconds: list[float]) -> list[float]:
    return seconds[1:] or seconds


def summarise(model: str, batch_size: int, measurements: list[dict]) -> list[dict]:
    """One row a path: the median seconds of its epochs after the first, over every repeat; for
    Lightning, its images/s against the hand loop's as the median ratio of paired epochs (the two
    always run paired), and against the tutorial's as the ratio of the medians."""
    rows = {}
    for path in [*PATHS, *sorted({name for m in measurements for name in m["seconds"] if "+" in name})]:
        runs = [m for m in measurements if path in m["seconds"]]
        if not runs:
            continue
        epoch_seconds = statistics.median(s for run in runs for s in after_warm_up(run["seconds"][path]))
        rows[path] = {
            "model": model,
            "batch_size": batch_size,
            "path": path,
            "epoch_seconds": epoch_seconds,
            "images_per_second": runs[0]["images"] / epoch_seconds,
            "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
            "peak_gpu_mb": runs[0]["peak_gpu_mb"],
        }
    if "lightning" in rows:
        lightning = rows["lightning"]
        if paired := paired_ratios(measurements, "hand", "lightning"):
            lightning["vs_hand"] = statistics.median(paired)
        if "tutorial" in rows:
            lightning["vs_tutorial"] = lightning["images_per_second"] / rows["tutorial"]["images_per_second"]
    for path in rows:
        if "+" in path:  # an augmented hand epoch's seconds over the plain one's, paired
            rows[path]["cost"] = statistics.median(paired_ratios(measurements, path, "hand")) - 1
    return list(rows.values())


def paired_ratios(measurements: list[dict], numerator: str, denominator: str) -> list[float]:
    """The ratios of the seconds of two paths' epochs, epoch by epoch, where they ran paired."""
    return [
        top / bottom
        for run in measurements
        if {numerator, denominator} <= run["seconds"].keys()
        for top, bottom in zip(
            after_warm_up(run["seconds"][numerator]), after_warm_up(run["seconds"][denominator]), strict=True
        )
    ]


def table(rows: list[dict]) -> str:
    columns = ["model", "batch", "path", "s/epoch", "images/s", "lightning/hand", "lightning/tutorial"]
    columns += ["augmentation cost", "peak RSS MB", "peak GPU MB"]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for r in rows:
        ratios = [f"{r[key]:.2f}" if key in r else "" for key in ("vs_hand", "vs_tutorial")]
        cost = f"{r['cost']:+.1%}" if "cost" in r else ""
        gpu = f"{r['peak_gpu_mb']:.0f}" if r["peak_gpu_mb"] is not None else "-"
        lines.append(
            f"| {r['model']} | {r['batch_size']} | {r['path']} | {r['epoch_seconds']:.2f} "
            f"| {r['images_per_second']:,.0f} | {ratios[0]} | {ratios[1]} | {cost} "
            f"| {r['peak_rss_mb']:.0f} | {gpu} |"
        )
    return "\n".join(lines)


MODELS = ("lenet", "mlp")
MAX_EPOCHS = 50  # epochs a measurement: more would run for hours on a CPU
BUSY_SHARE = 0.1  # other processes' CPU seconds, as a share of the benchmark's own, that make it unclean


def check(args) -> None:
    """Refuse, in one line, what the benchmark cannot measure."""
    if unknown := [model for model in args.models if model not in MODELS]:
        raise BadInput(f"--models {unknown[0]} is invalid: give {' or '.join(MODELS)}")
    if small := [size for size in args.batch_sizes if size < 1]:
        raise BadInput(f"--batch-sizes {small[0]} is invalid: give a batch size of 1 or more")
    if not 2 <= args.epochs <= MAX_EPOCHS:
        raise BadInput(f"--epochs {args.epochs} is invalid: give 2 to {MAX_EPOCHS} (the first warms up)")
    if args.repeats < 1:
        raise BadInput(f"--repeats {args.repeats} is invalid: give 1 or more")


@entry_point
def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="benchmarks/throughput.py", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement (the first is warm-up)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each path, interleaved")
    parser.add_argument("--limit-batches", type=int, default=0, help="batches per epoch (0: all)")
    parser.add_argument("--augment", help="also time hand epochs distorted by this augment option (paired)")
    parser.add_argument("--one", choices=["paired", *PATHS], help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for all three paths, after --")
    args = parser.parse_args(argv)
    check(args)
    if args.one:
        print(json.dumps(measure_one(args.one, args.models[0], args.batch_sizes[0], args)))
        return 0
    os.environ.setdefault("MNIST_DATA_DIR", str(ROOT / "data"))
    print(
        f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, {args.epochs} epochs"
    )
    # Lightning and the hand loop run paired in one process when both are asked for.
    paired = {"lightning", "hand"} <= set(args.paths)
    runs = ["paired"] if paired else []
    runs += [path for path in args.paths if not (paired and path in ("lightning", "hand"))]
    rows = []
    with OtherWork() as cpu:
        for model in args.models:
            for batch_size in args.batch_sizes:
                measurements = []
                for _ in range(args.repeats):  # interleaved: a slow spell of the machine hits every run
                    for run in runs:
                        measurements.append(measure(run, model, batch_size, args))
                        record = {"run": run, "model": model, "batch_size": batch_size} | measurements[-1]
                        print(json.dumps(record), file=sys.stderr, flush=True)
                rows += summarise(model, batch_size, measurements)
    mine, others = cpu.seconds() or (0.0, 0.0)
    if others > BUSY_SHARE * mine:
        print(
            f"BUSY MACHINE: other processes took {others:.0f} CPU s beside these {mine:.0f}: the timings "
            "and ratios below are not clean; measure again on an idle machine"
        )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
