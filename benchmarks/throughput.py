"""Training throughput side by side: the project's Lightning path, a hand-written loop, the tutorial.

    python benchmarks/throughput.py                      # LeNet and MLP, batch 64 and 256, 3 epochs
    python benchmarks/throughput.py --models lenet --batch-sizes 512 --epochs 5

For each model and batch size, three ways to train on the same MNIST split, each in a process of
its own (so peak memory is its own):

1. lightning: `train.py`'s path, built by the same code from the same config (TensorBoard
   logger, checkpoints, progress bar, validation every epoch), overrides given after `--`;
2. hand: a plain PyTorch loop over the same in-memory tensors, same model, loss and optimizer;
3. tutorial: torchvision's MNIST with per-sample PIL Resize, ToTensor and Normalize through a
   DataLoader, as the PyTorch tutorials do.

Every epoch is training plus a pass over the 5,000 validation images, in all three. Seconds per
epoch are the median over the epochs after the first (warm-up), and with `--repeats N` the median
of N interleaved runs of each path; images/s counts training images.
Runs on the GPU when one is present (`--device cpu` to stay on the CPU).
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
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from mnist_classifier.experiment import build

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("lightning", "hand", "tutorial")


def compose_config(overrides: list[str], output_dir: str) -> DictConfig:
    """The config train.py would get for these overrides, with Hydra's runtime pointed at output_dir."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = output_dir
        cfg.hydra.runtime.cwd = str(ROOT)
    HydraConfig.instance().set_config(cfg)
    return cfg


class EpochTimer(L.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning validates (and checkpoints) before this hook: the epoch includes both.
        self.seconds.append(time.perf_counter() - self.start)


# Each path returns the seconds of each epoch and the number of training images in an epoch.
Timings = tuple[list[float], int]


def run_lightning(cfg: DictConfig, device: torch.device, limit: int | None) -> Timings:
    datamodule, classifier, trainer = build(cfg)
    timer = EpochTimer()
    trainer.callbacks.append(timer)
    trainer.fit(classifier, datamodule=datamodule)
    images = min(trainer.num_training_batches * datamodule.batch_size, len(datamodule.train_set))
    return timer.seconds, images


def hand_loop(
    cfg: DictConfig,
    device: torch.device,
    train_batches: Callable[[], object],
    val_batches: Callable[[], object],
) -> list[float]:
    """The loop a person writes by hand: forward, loss, backward, step; then count correct on val."""
    L.seed_everything(cfg.seed, verbose=False)
    model = instantiate(cfg.model).to(device)
    loss_fn = instantiate(cfg.loss)
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    seconds = []
    for _ in range(cfg.trainer.max_epochs):
        start = time.perf_counter()
        model.train()
        for images, labels in train_batches():
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            loss = loss_fn(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        correct = torch.zeros((), device=device, dtype=torch.long)
        with torch.no_grad():
            for images, labels in val_batches():
                images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                correct += (model(images).argmax(1) == labels).sum()
        correct.item()  # wait for the device, as the end of an epoch does
        seconds.append(time.perf_counter() - start)
    return seconds


def run_hand(cfg: DictConfig, device: torch.device, limit: int | None) -> Timings:
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    train_images, train_labels = (t.to(device) for t in datamodule.train_set.tensors)
    val_images, val_labels = (t.to(device) for t in datamodule.val_set.tensors)
    size = cfg.data.batch_size

    def train_batches():
        order = torch.randperm(len(train_labels), device=device).split(size)[:limit]
        return ((train_images[index], train_labels[index]) for index in order)

    def val_batches():
        starts = range(0, len(val_labels), size)[:limit]
        return ((val_images[i : i + size], val_labels[i : i + size]) for i in starts)

    return hand_loop(cfg, device, train_batches, val_batches), len(
        train_labels[: size * limit if limit else None]
    )


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
    val = DataLoader(Subset(mnist, val_index.tolist()), batch_size=size, **loader_args)

    def limited(loader: DataLoader) -> Callable[[], object]:
        return lambda: itertools.islice(loader, limit)

    train_images = len(train_index[: size * limit if limit else None])
    return hand_loop(cfg, device, limited(train), limited(val)), train_images


def measure_one(path: str, model: str, batch_size: int, args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    overrides = [f"model={model}", f"data.batch_size={batch_size}", f"trainer.max_epochs={args.epochs}"]
    overrides += [f"trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}", "trainer.devices=1"]
    if args.limit_batches:
        overrides += [f"+trainer.limit_train_batches={args.limit_batches}"]
        overrides += [f"+trainer.limit_val_batches={args.limit_batches}", "+trainer.num_sanity_val_steps=0"]
    overrides += args.overrides
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as output_dir:
        cfg = compose_config(overrides, output_dir)
        runner = {"lightning": run_lightning, "hand": run_hand, "tutorial": run_tutorial}[path]
        seconds, images = runner(cfg, device, args.limit_batches or None)
    epoch_seconds = statistics.median(seconds[1:] or seconds)
    return {
        "path": path,
        "model": model,
        "batch_size": batch_size,
        "device": str(device),
        "epoch_seconds": epoch_seconds,
        "images_per_second": images / epoch_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
    }


def measure(path: str, model: str, batch_size: int, args: argparse.Namespace) -> dict:
    """Run one measurement in a fresh process and return its figures."""
    command = [sys.executable, __file__, "--one", path, "--models", model, "--batch-sizes", str(batch_size)]
    command += ["--epochs", str(args.epochs), "--device", args.device]
    command += ["--limit-batches", str(args.limit_batches)] if args.limit_batches else []
    command += ["--", *args.overrides]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"error: {path} {model} batch {batch_size} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def table(results: list[dict]) -> str:
    columns = ["model", "batch", "path", "s/epoch", "images/s", "lightning/hand", "lightning/tutorial"]
    columns += ["peak RSS MB", "peak GPU MB"]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    by_key = {(r["model"], r["batch_size"], r["path"]): r for r in results}
    for r in results:
        lightning = by_key.get((r["model"], r["batch_size"], "lightning"))
        ratios = ["", ""]
        if r["path"] == "lightning":
            for column, other in enumerate(("hand", "tutorial")):
                if (r["model"], r["batch_size"], other) in by_key:
                    speed = by_key[(r["model"], r["batch_size"], other)]["images_per_second"]
                    ratios[column] = f"{lightning['images_per_second'] / speed:.2f}"
        gpu = f"{r['peak_gpu_mb']:.0f}" if r["peak_gpu_mb"] is not None else "-"
        lines.append(
            f"| {r['model']} | {r['batch_size']} | {r['path']} | {r['epoch_seconds']:.2f} "
            f"| {r['images_per_second']:,.0f} | {ratios[0]} | {ratios[1]} | {r['peak_rss_mb']:.0f} | {gpu} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet", "mlp"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement (the first is warm-up)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of each path, interleaved; the median counts"
    )
    parser.add_argument("--limit-batches", type=int, default=0, help="batches per epoch (0: all)")
    parser.add_argument("--one", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for all three paths, after --")
    args = parser.parse_args()
    for name in ("epochs", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)} is invalid: it must be >= 1")
    if args.one:
        print(json.dumps(measure_one(args.one, args.models[0], args.batch_sizes[0], args)))
        return
    os.environ.setdefault("MNIST_DATA_DIR", str(ROOT / "data"))
    print(
        f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, {args.epochs} epochs"
    )
    results = []
    for model in args.models:
        for batch_size in args.batch_sizes:
            # Interleaved repeats: a slow spell of a shared machine hits every path alike.
            runs: dict[str, list[dict]] = {path: [] for path in args.paths}
            for _ in range(args.repeats):
                for path in args.paths:
                    runs[path].append(measure(path, model, batch_size, args))
                    print(json.dumps(runs[path][-1]), file=sys.stderr, flush=True)
            for path in args.paths:
                ranked = sorted(runs[path], key=lambda run: run["epoch_seconds"])
                results.append(ranked[len(ranked) // 2])
    print(table(results))


if __name__ == "__main__":
    main()
