"""What a run prints: a line per epoch where no progress bar is drawn, and the summary at the end;
and the library messages that say nothing to a user, silenced where they come from."""

import logging
import warnings
from collections.abc import Mapping

from lightning.pytorch import Callback, LightningModule, Trainer

log = logging.getLogger("mnist_classifier")

# Lightning's start-up lines (which accelerators exist, tips for other products) and its
# "`Trainer.fit` stopped" note: the summary says what matters.
QUIET_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


def quiet_libraries() -> None:
    """Silence the messages of libraries that tell a user nothing about the run. Warnings about the
    user's own settings are kept; these are notes to library developers."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if logging.getLogger().handlers:
        # The `lightning` package gives its logger a console handler of its own, besides passing
        # records on to the root logger's (Hydra's console and run log): each line would show twice.
        logging.getLogger("lightning").handlers.clear()
    # Lightning 2.6 calls an API of torch.utils._pytree that torch 2.14 deprecates.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


EPOCH_METRICS = ("train/loss_step", "val/loss", "val/acc", "val/acc_best")


class EpochLog(Callback):
    """One line per validated epoch (the last step's loss, the validation loss and accuracies) when
    no progress bar shows them, e.g. when the output goes to a log file."""

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Not on_validation_epoch_end: callbacks run that before the module logs val/acc_best.
        if trainer.sanity_checking or trainer.progress_bar_callback is not None or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        shown = ", ".join(f"{name} {float(metrics[name]):.4f}" for name in EPOCH_METRICS if name in metrics)
        total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        log.info("epoch %d%s: %s", trainer.current_epoch + 1, total, shown)


def summary(results: Mapping[str, float | int | str]) -> None:
    """The last lines a run prints: what it reached and where its files are."""
    width = max(map(len, results)) + 1
    for name, value in results.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        log.info("%s %s", f"{name}:".ljust(width), shown)
