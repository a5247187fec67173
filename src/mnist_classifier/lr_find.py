"""The learning-rate range test, `python train.py tune=lr_find`: the run built as train.py builds it,
then Lightning's learning-rate finder (Tuner.lr_find) instead of training. A short fit from the
config's initial weights raises the rate every step, from tune.min_lr to tune.max_lr, and records
the smoothed loss at each; the suggestion is the rate where that loss fell fastest. It prints the
suggestion and the override that uses it, and logs the loss-against-rate curve and its plot to every
logger. Nothing is trained for good: Lightning reloads the initial weights, and no checkpoint is kept.
"""

import logging
import math
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from lightning.pytorch import Trainer
from lightning.pytorch.tuner import Tuner
from matplotlib import pyplot
from omegaconf import DictConfig, open_dict

from mnist_classifier.overrides import override_key
from mnist_classifier.tracking import finish, log_figure, tracker_commands
from mnist_classifier.training import build, quiet_libraries, summary

PLOT = "lr_find.png"  # in the run dir
FIGURE_TAG = "tune/lr_find"
RATE_TAG, LOSS_TAG = "tune/lr", "tune/loss"  # a point per step of the test
SUGGESTED = "tune/suggested_lr"

# What optimizer.lr is under each scheduler of conf/scheduler: the suggestion is a value for it.
RATE_MEANING = {
    "none": "the rate of the whole run (scheduler=none)",
    "step": "the starting rate, which scheduler=step lowers",
    "cosine": "the starting rate, which scheduler=cosine anneals",
    "onecycle": "the peak of scheduler=onecycle's cycle, which warms up to it and then anneals",
}


def find_lr(cfg: DictConfig) -> dict[str, float]:
    """Run the range test of `cfg.tune` on the run `cfg` composes, log and print what it found; the
    suggested rate, as {SUGGESTED: rate}."""
    quiet_libraries()
    trainer, finder = range_test(cfg)
    run_dir = Path(cfg.paths.output_dir)
    suggested = finder.suggestion()
    record(trainer, finder, suggested, run_dir / PLOT)
    commands = tracker_commands(trainer, cfg.paths.log_dir)
    finish(trainer, failed=suggested is None)
    if suggested is None:
        raise RuntimeError(
            f"the range test stopped after {len(finder.results['lr'])} steps, too few to suggest a rate "
            f"(the loss diverged early); see {run_dir / PLOT}, and lower tune.max_lr or raise "
            "tune.early_stop_threshold"
        )
    summary(found(cfg, finder.results["lr"], suggested) | commands)
    return {SUGGESTED: suggested}


def range_test(cfg: DictConfig) -> tuple[Trainer, Any]:
    """The trainer of the run `cfg` composes, and Lightning's finder after the test (its results:
    the rate and the smoothed loss of each step)."""
    tune = cfg.tune
    with open_dict(cfg):
        # One device: Lightning's tuner runs in one process (config.preflight refuses more).
        cfg.trainer.devices = 1
        # Every epoch has a step at least, so the run's epochs cannot end the test before its steps.
        cfg.trainer.max_epochs = tune.num_training
    datamodule, classifier, trainer = build(cfg)
    Path(cfg.paths.output_dir).mkdir(parents=True, exist_ok=True)  # Hydra makes it; compose() does not
    # Lightning puts its own rising rate in the optimizer and its own scheduler in place of the run's,
    # for the test only, and reloads the initial weights after; update_attr=False: the classifier's
    # optimizer comes from the config, which the printed override changes.
    with quiet(LIBRARY_NOTES):
        finder = Tuner(trainer).lr_find(
            classifier,
            datamodule=datamodule,
            min_lr=tune.min_lr,
            max_lr=tune.max_lr,
            num_training=tune.num_training,
            mode=tune.mode,
            early_stop_threshold=tune.early_stop_threshold,
            update_attr=False,
        )
    return trainer, finder


def record(trainer: Trainer, finder: Any, suggested: float | None, plot: Path) -> None:
    """The test's curve, point by point, and its plot with the suggestion marked, to every logger;
    the plot also as a file."""
    for logger in trainer.loggers:
        for step, (lr, loss) in enumerate(zip(finder.results["lr"], finder.results["loss"], strict=True)):
            logger.log_metrics({RATE_TAG: lr, LOSS_TAG: loss}, step=step)
    figure = finder.plot(suggest=True)
    axes = figure.axes[0]
    axes.set_title("no suggestion" if suggested is None else f"suggested optimizer.lr={rate(suggested)}")
    # Up to the last step but one: a diverging last step would flatten the rest of the curve.
    if shown := [loss for loss in finder.results["loss"][:-1] if math.isfinite(loss)]:
        margin = (max(shown) - min(shown)) / 20 or 0.1
        axes.set_ylim(min(shown) - margin, max(shown) + margin)
    log_figure(trainer, FIGURE_TAG, figure)
    figure.savefig(plot)
    pyplot.close(figure)  # pyplot keeps every figure it draws until closed


def found(cfg: DictConfig, rates: list[float], suggested: float) -> dict[str, str]:
    """What the summary says: the suggestion, what it sets, the range swept and the command."""
    tune, choices = cfg.tune, HydraConfig.get().runtime.choices
    scheduler = choices.get("scheduler")
    meaning = RATE_MEANING.get(scheduler, f"the rate scheduler={scheduler} starts from")
    swept = f"{rate(rates[0])} to {rate(rates[-1])}, {tune.mode}, in {len(rates)} steps"
    if len(rates) < tune.num_training:  # the epochs cannot end it (range_test): the loss diverged
        swept += f" of {tune.num_training}: the loss passed {tune.early_stop_threshold:g}x its lowest"
    return {
        "suggested rate": f"{rate(suggested)}, where the loss fell fastest (optimizer={choices.optimizer})",
        "it sets": f"optimizer.lr, {meaning}",
        "swept": swept,
        "use it": use_it(suggested),
        "plot": str(Path(cfg.paths.output_dir) / PLOT),
        "run dir": cfg.paths.output_dir,
    }


# Lightning's notes as it saves and reloads the initial weights around the test, and its line on a
# test stopped early, which the summary gives; its errors still show.
LIBRARY_NOTES = (
    "lightning.pytorch.trainer.connectors.checkpoint_connector",
    "lightning.pytorch.tuner.lr_finder",
)


@contextmanager
def quiet(names: tuple[str, ...]) -> Iterator[None]:
    """These loggers' info lines left out inside the block."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def rate(value: float) -> str:
    """A rate to three significant digits: the test's steps are coarser than that."""
    return f"{value:.3g}"


def use_it(suggested: float) -> str:
    """The command of this run with the suggested rate in place of the range test."""
    kept = [line for line in HydraConfig.get().overrides.task if override_key(line).split(".")[0] != "tune"]
    kept = [line for line in kept if override_key(line) != "optimizer.lr"]
    return shlex.join(["python", "train.py", *kept, f"optimizer.lr={rate(suggested)}"])
