"""What a callback costs a training step in Lightning's loop, counted in instructions (callgrind,
benchmarks/instructions.py) on a net of one tiny layer, so that the count is the loop's own:

    python benchmarks/callback_cost.py      # about 10 minutes

Each case is a fit of --short and of --long steps on the same batch (no validation, no logger); its
cost a step is the slope between them, after an uncounted warm-up fit. The cases: no callback;
five callbacks that do nothing; Lightning's ModelCheckpoint and the project's
(hook_calls.ModelCheckpoint, its state key formatted once); and each again under the trainer's
profiler setting (hook_calls.Unprofiled) rather than Lightning's default PassThroughProfiler.
"""

import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from functools import partial

import lightning as L
import torch
from instructions import InstructionCounter, counting, run_counted
from lightning.pytorch import Callback, callbacks

from mnist_classifier.errors import ArgumentParser, BadInput, entry_point
from mnist_classifier.hook_calls import ModelCheckpoint, Unprofiled
from mnist_classifier.training import quiet_libraries


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class OneBatch:
    """The same batch `count` times, as a loader."""

    def __init__(self, count: int) -> None:
        self.batch, self.count = (torch.randn(2, 4), torch.tensor([0, 1])), count

    def __iter__(self):
        return iter([self.batch] * self.count)

    def __len__(self) -> int:
        return self.count


CASES: dict[str, Callable[[str], list[Callback]]] = {
    "no callback": lambda folder: [],
    "5 callbacks that do nothing": lambda folder: [Callback() for _ in range(5)],
    "Lightning's ModelCheckpoint": lambda folder: [callbacks.ModelCheckpoint(folder, monitor="val/acc")],
    "hook_calls.ModelCheckpoint": lambda folder: [ModelCheckpoint(folder, monitor="val/acc")],
}


def fit(steps: int, make: Callable[[str], list[Callback]], unprofiled: bool, folder: str) -> None:
    made = make(folder)
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=steps, limit_val_batches=0,
        num_sanity_val_steps=0, logger=False, callbacks=made, default_root_dir=folder,
        enable_checkpointing=any(isinstance(callback, callbacks.ModelCheckpoint) for callback in made),
        enable_model_summary=False, enable_progress_bar=False, profiler=Unprofiled() if unprofiled else None,
    )  # fmt: skip
    trainer.fit(Tiny(), train_dataloaders=OneBatch(steps))


@entry_point
def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="benchmarks/callback_cost.py", description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=10, help="steps of the short fit")
    parser.add_argument("--long", type=int, default=60, help="steps of the long fit")
    args = parser.parse_args(argv)
    if not 1 <= args.short < args.long:
        raise BadInput(f"--short {args.short} --long {args.long} is invalid: give 1 <= short < long")
    if not counting():
        if shutil.which("valgrind") is None:
            raise BadInput("valgrind is invalid: not installed; apt-get install -y valgrind")
        return run_counted([sys.executable, __file__, *argv])
    quiet_libraries()
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval")
    warnings.filterwarnings("ignore", message=r".*could not find the monitored key")  # nothing validates
    count = InstructionCounter()
    print("| case | thousand instructions a step, Lightning's profiler | hook_calls.Unprofiled |")
    print("| --- | ---: | ---: |")
    with tempfile.TemporaryDirectory() as folder:
        for name, make in CASES.items():
            costs = []
            for unprofiled in (False, True):
                run = partial(fit, make=make, unprofiled=unprofiled, folder=folder)
                run(2)  # the warm-up
                short, long = (count(partial(run, steps)) for steps in (args.short, args.long))
                costs.append((long - short) / (args.long - args.short) / 1000)
            print(f"| {name} | {costs[0]:,.0f} | {costs[1]:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
