"""Lightning callbacks that tests add to a run they start (`+callbacks.NAME={_target_: tests.run_hooks...}`),
so that the run itself says when it is where the test wants it, instead of the test guessing from a clock.
Imported by train.py's process: light imports only."""

import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from lightning.pytorch import Callback, LightningModule, Trainer

WAIT_S = 600  # how long a paused run waits for the test before failing on its own


class PauseAtSteps(Callback):
    """At the end of each listed optimizer step the run reaches, writes `folder/paused-STEP` and waits
    until the test writes `folder/go-STEP`. While it waits, nothing of the run's own is half done (no
    checkpoint being saved, no log being written): signals sent then land at that step."""

    def __init__(self, folder: str, steps: list[int]) -> None:
        self.folder, self.steps = Path(folder), set(steps)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: object, batch: object, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step not in self.steps:
            return
        (self.folder / f"paused-{step}").write_text(str(step))
        deadline = time.monotonic() + WAIT_S
        while not (self.folder / f"go-{step}").exists():  # a signal's handler runs within this wait
            if time.monotonic() > deadline:
                raise RuntimeError(f"paused at step {step}: the test never said go")
            time.sleep(0.05)


class FailJob(Callback):
    """Raises as the trainer sets up, where a job's bad data would (before anything is logged), in the
    sweep's jobs numbered `jobs` (a study's job is numbered by its trial), or in every job if None."""

    MESSAGE = "job {} fails on purpose"

    def __init__(self, jobs: list[int] | None = None) -> None:
        self.jobs = jobs

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        number = HydraConfig.get().job.num
        if self.jobs is None or number in self.jobs:
            raise RuntimeError(self.MESSAGE.format(number))
