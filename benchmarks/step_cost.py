"""Where the time of a training step goes: train.py's Lightning path built up piece by piece from the
hand-written loop (benchmarks/hand_loop.py), on the same model, optimizer, batch size and tensors.

    python benchmarks/step_cost.py                          # LeNet and the MLP at batch 128, microseconds
    python benchmarks/step_cost.py --instructions --models mlp --rounds 1 --short 10 --long 60  # instructions

Each row adds one piece to the row above it; the last rows are train.py's path with its progress
bar (drawn on a terminal only) and with its default augmentation. A row's cost is the slope of a
fit's time over its training steps (fits of --short and --long steps, no validation), so that what
a fit costs once cancels; rows take turns in each of --rounds rounds, and the median is shown. The
epoch's end (the validation pass, checkpoints, dashboards) is timed apart, per epoch, and spread
over an epoch's steps in the last line.

Microseconds depend on what else the machine runs: the output says how much CPU other processes
took meanwhile. With --instructions, the same rows in thousands of instructions a step, one thread,
counted by valgrind's callgrind (benchmarks/instructions.py), which the rest of the machine does not
change; callgrind runs the steps many times slower, hence fewer of them.
"""

import argparse
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from hand_loop import HandLoop, hand_loop_on_tensors
from hydra.utils import instantiate
from instructions import InstructionCounter, counting, run_counted
from lightning.pytorch.callbacks import TQDMProgressBar
from omegaconf import DictConfig

from mnist_classifier.config import compose
from mnist_classifier.cpu_time import OtherWork
from mnist_classifier.data import MNISTDataModule
from mnist_classifier.errors import ArgumentParser, BadInput, entry_point
from mnist_classifier.training import build, instantiate_classifier, quiet_libraries

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("lenet", "mlp")
CALLBACKS = {  # train.py's callbacks (conf/callbacks/default.yaml), as the rows add them
    "checkpoints": ["model_checkpoint", "last_checkpoint"],
    "learning-rate monitor": ["learning_rate_monitor"],
    "dashboards": ["dashboards"],
    "run log": ["run_log"],
}
ROWS = (
    "hand loop (forward, backward, optimizer step)",
    "Lightning's loop (a plain LightningModule)",
    "+ the data module (batches from tensors, transfer hooks)",
    "+ the trainer's profiler setting (hook_calls.Unprofiled)",
    "+ the classifier's metrics and step logs",
    "+ checkpoints",
    "+ TensorBoard logger",
    "+ learning-rate monitor",
    "+ dashboards",
    "+ run log = train.py",
    "train.py + progress bar (a terminal)",
    "hand loop + augment=affine",
    "train.py + augment=affine",
)
TRAIN_PY = ROWS[9]


class PlainModule(L.LightningModule):
    """The net, loss and optimizer of a classifier, and nothing else: Lightning's loop alone."""

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__()
        classifier = instantiate_classifier(cfg)
        self.net, self.loss, self.optimizer_factory = (
            classifier.net,
            classifier.loss,
            classifier.optimizer_factory,
        )

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        return self.loss(self.net(images), labels)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.parameters())


class Batches:
    """The hand loop's batches as a loader, for Lightning's loop without the data module."""

    def __init__(self, make: Callable, count: int) -> None:
        self.make, self.count = make, count

    def __iter__(self):
        return iter(self.make())

    def __len__(self) -> int:
        return self.count


def timed(work: Callable[[], object]) -> float:
    """The seconds a call takes, the GPU's work it queued included."""
    start = time.perf_counter()
    work()
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def row_fits(cfg: DictConfig, out: Path, device: str) -> dict[str, Callable[[int, bool], None]]:
    """For each row, a function running `steps` training steps (and validation, if asked) that way."""
    datamodule, classifier, _ = build(cfg)
    accelerator = "gpu" if device == "cuda" else "cpu"
    hand = hand_loop_on_tensors(cfg, datamodule, torch.device(device))

    @functools.cache
    def affine() -> tuple[MNISTDataModule, HandLoop]:
        """The data module of augment=affine and the hand loop over its batches: built only for the
        rows that use them (a second data set read, minutes under callgrind)."""
        distorted = compose([f"data.data_dir={cfg.data.data_dir}", "augment=affine"], out)
        augmented_data, _, _ = build(distorted)
        return augmented_data, hand_loop_on_tensors(
            cfg, augmented_data, torch.device(device), augment=augmented_data.augment
        )

    plain = PlainModule(cfg)
    steps_per_epoch = len(datamodule.train_dataloader())

    def fit(module, groups: list[str], logger: bool, steps: int, validate: bool, **options) -> None:
        """A fit of `steps` steps: Lightning's defaults, with train.py's settings for what is asked."""
        names = [name for group in groups for name in CALLBACKS[group]]
        fresh = {"dirpath": tempfile.mkdtemp(dir=out)}  # as a new run's: no checkpoints there yet
        callbacks = [
            instantiate(cfg.callbacks[name], **(fresh if "checkpoint" in name else {}))
            for name in names
            if cfg.callbacks.get(name) is not None
        ]
        checkpoints = "checkpoints" in groups
        if options.get("progress"):
            callbacks.append(TQDMProgressBar(refresh_rate=cfg.callbacks.progress_bar.refresh_rate))
        trainer = L.Trainer(
            accelerator=accelerator, devices=1, max_epochs=1, limit_train_batches=steps,
            limit_val_batches=1.0 if validate else 0, num_sanity_val_steps=0,
            logger=instantiate(cfg.logger.tensorboard) if logger else False, callbacks=callbacks,
            enable_checkpointing=checkpoints, enable_model_summary=False,
            enable_progress_bar=bool(options.get("progress")), default_root_dir=out,
            log_every_n_steps=cfg.trainer.log_every_n_steps,
            profiler=instantiate(cfg.trainer.profiler) if options.get("profiler", True) else None,
        )  # fmt: skip
        if options.get("plain_batches"):
            trainer.fit(module, train_dataloaders=Batches(hand.train_batches, steps_per_epoch))
        else:
            trainer.fit(module, datamodule=options.get("data", datamodule))

    every = list(CALLBACKS)
    return {
        ROWS[0]: lambda steps, validate: (hand.train(steps), validate and hand.validate()),
        ROWS[1]: lambda steps, validate: fit(
            plain, [], False, steps, validate, plain_batches=True, profiler=False
        ),
        ROWS[2]: lambda steps, validate: fit(plain, [], False, steps, validate, profiler=False),
        ROWS[3]: lambda steps, validate: fit(plain, [], False, steps, validate),
        ROWS[4]: lambda steps, validate: fit(classifier, [], False, steps, validate),
        ROWS[5]: lambda steps, validate: fit(classifier, every[:1], False, steps, validate),
        ROWS[6]: lambda steps, validate: fit(classifier, every[:1], True, steps, validate),
        ROWS[7]: lambda steps, validate: fit(classifier, every[:2], True, steps, validate),
        ROWS[8]: lambda steps, validate: fit(classifier, every[:3], True, steps, validate),
        TRAIN_PY: lambda steps, validate: fit(classifier, every, True, steps, validate),
        ROWS[10]: lambda steps, validate: fit(classifier, every, True, steps, validate, progress=True),
        ROWS[11]: lambda steps, validate: (affine()[1].train(steps), validate and affine()[1].validate()),
        ROWS[12]: lambda steps, validate: fit(classifier, every, True, steps, validate, data=affine()[0]),
    }, steps_per_epoch


def measure(model: str, args: argparse.Namespace, cost: Callable[[Callable[[], object]], float]) -> dict:
    """Each row's cost a step, and the epoch's end of the hand loop and of train.py, over the rounds;
    `cost` gives a call's cost (its seconds, or its instructions)."""
    with tempfile.TemporaryDirectory() as out:
        overrides = [f"model={model}", f"data.batch_size={args.batch_size}", "augment=none", *args.overrides]
        cfg = compose(overrides, out)
        fits, steps_per_epoch = row_fits(cfg, Path(out), args.device)
        counted = {0, 1, ROWS.index(TRAIN_PY), *(args.rows or range(len(ROWS)))}
        fits = {row: run for index, (row, run) in enumerate(fits.items()) if index in counted}
        per_step: dict[str, list[float]] = {row: [] for row in fits}
        epoch_end: dict[str, list[float]] = {ROWS[0]: [], TRAIN_PY: []}
        warned: dict[int, list[str]] = {}
        for round in range(args.rounds + 1):
            for row, run in fits.items():
                if round == 0:  # a warm-up, uncounted: each path once (allocations, lazy imports), and
                    # train.py's through a logging step and the epoch's end, whose paths are the widest
                    run(args.long, True) if row in epoch_end else run(2, False)
                    continue
                costs = {}
                for steps in (args.short, args.long):
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        costs[steps] = cost(lambda run=run, steps=steps: run(steps, False))
                    if row == TRAIN_PY:
                        warned[steps] = [f"{w.category.__name__}: {str(w.message)[:70]}" for w in caught]
                per_step[row].append((costs[args.long] - costs[args.short]) / (args.long - args.short))
                if row in epoch_end:
                    with_end = cost(lambda run=run: run(args.short, True))
                    epoch_end[row].append(with_end - costs[args.short])
    return {
        "per_step": {row: statistics.median(values) for row, values in per_step.items()},
        "epoch_end": {row: statistics.median(values) for row, values in epoch_end.items()},
        "steps_per_epoch": steps_per_epoch,
        "long": args.long,
        "warnings": sorted(set(warned[args.long])),
        "warnings_per_step": (len(warned[args.long]) - len(warned[args.short])) / (args.long - args.short),
    }


def table(model: str, batch_size: int, result: dict, instructions: bool) -> str:
    per_step, epoch_end, steps = result["per_step"], result["epoch_end"], result["steps_per_epoch"]
    hand, plain, train = per_step[ROWS[0]], per_step[ROWS[1]], per_step[TRAIN_PY]
    hand_end, train_end = epoch_end[ROWS[0]], epoch_end[TRAIN_PY]
    unit, scale = ("thousand instructions", 1e-3) if instructions else ("µs", 1e6)
    lines = [
        f"**{model}**, batch {batch_size}" + (", one thread" if instructions else ""),
        "",
        f"| row | {unit} | over the hand loop |",
        "| --- | ---: | ---: |",
    ]
    lines += [
        f"| {row} | {value * scale:,.0f} | {(value - hand) * scale:+,.0f} |"
        for row, value in per_step.items()
    ]
    lines += [
        f"| the epoch's end, hand loop (validation), an epoch | {hand_end * scale:,.0f} | |",
        f"| the epoch's end, train.py (validation, checkpoints, dashboards), an epoch "
        f"| {train_end * scale:,.0f} | {(train_end - hand_end) * scale:+,.0f} |",
        f"| train.py, a step with its share of an epoch's end ({steps} steps) "
        f"| {(train + train_end / steps) * scale:,.0f} "
        f"| {(train - hand + (train_end - hand_end) / steps) * scale:+,.0f} |",
        "",
        f"Ours, a step: train.py over Lightning's plain loop, {(train - plain) * scale:+,.0f} {unit}.",
        "",
        f"Warnings raised in train.py's fit: {result['warnings_per_step']:.2f} a step; in a fit of "
        f"{result['long']} steps: " + ("; ".join(result["warnings"]) or "none"),
    ]
    return "\n".join(lines)


@entry_point
def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="benchmarks/step_cost.py", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--short", type=int, default=40, help="training steps of the short fit")
    parser.add_argument("--long", type=int, default=240, help="training steps of the long fit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--rows", type=int, nargs="+", metavar="ROW",
        help="only these rows, by their number from 0 in the table; the hand loop (0), Lightning's plain "
        "loop (1) and train.py (9) are always measured",
    )  # fmt: skip
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions (valgrind's callgrind), not time"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every row, after --")
    args = parser.parse_args(argv)
    if unknown := [model for model in args.models if model not in MODELS]:
        raise BadInput(f"--models {unknown[0]} is invalid: give {' or '.join(MODELS)}")
    if args.batch_size < 1:
        raise BadInput(f"--batch-size {args.batch_size} is invalid: give 1 or more")
    if unknown := [row for row in args.rows or () if not 0 <= row < len(ROWS)]:
        raise BadInput(f"--rows {unknown[0]} is invalid: give row numbers 0 to {len(ROWS) - 1}")
    if not 1 <= args.short < args.long:
        raise BadInput(f"--short {args.short} --long {args.long} is invalid: give 1 <= short < long")
    if args.instructions and args.device != "cpu":
        raise BadInput(
            f"--device {args.device} is invalid with --instructions: give cpu (callgrind counts a CPU's)"
        )
    if args.instructions and not counting():
        if shutil.which("valgrind") is None:
            raise BadInput("--instructions is invalid without valgrind: apt-get install -y valgrind")
        return run_counted([sys.executable, __file__, *argv])
    quiet_libraries()
    os.environ.setdefault("MNIST_DATA_DIR", str(ROOT / "data"))
    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads")
    cost = InstructionCounter() if args.instructions else timed
    for model in args.models:
        with OtherWork() as cpu:
            result = measure(model, args, cost)
        print(table(model, args.batch_size, result, args.instructions) + "\n")
        mine, others = cpu.seconds() or (0.0, 0.0)
        if others > 0.1 * mine and not args.instructions:
            print(
                f"BUSY MACHINE: other processes took {others:.0f} CPU s beside these {mine:.0f}: not clean\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
