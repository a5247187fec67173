"""The selection metric: which epoch of a run is its best, declared once (`selection` in
conf/train.yaml: a monitor and a mode) and read from there by the best-checkpoint callback, the
checkpoint a run tests, early stopping, the Optuna sweeper's objective and direction, and the sweep
report's ranking. Imports no torch: the config's checks and the report read it.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

# What the Classifier logs once an epoch, and so what can select an epoch, in words.
EPOCH_METRICS = {
    "val/acc": "val accuracy",
    "val/loss": "val loss",
    "train/acc": "train accuracy",
    "train/loss_epoch": "train loss",
}
Mode = Literal["max", "min"]
SELECTION_ATTR = "selection"  # the Optuna study's user attribute that keeps its selection


@dataclass(frozen=True)
class Selection:
    monitor: str = "val/acc"
    mode: Mode = "max"

    @classmethod
    def of(cls, cfg: Mapping[str, Any]) -> "Selection":
        """The selection a composed config (or a sweep's multirun.yaml) declares."""
        node = cfg.get("selection") or {}
        return cls(**{key: node[key] for key in ("monitor", "mode") if key in node})

    @property
    def best_key(self) -> str:
        """The name of a run's result that holds the monitor's best value: `val/acc_best`."""
        return f"{self.monitor}_best"

    @property
    def words(self) -> str:
        """The monitor as the run's summary names it: `val accuracy`."""
        return EPOCH_METRICS.get(self.monitor, self.monitor)

    @property
    def direction(self) -> str:
        """Optuna's word for the mode."""
        return "maximize" if self.mode == "max" else "minimize"

    def score(self, results: Mapping[str, float]) -> float:
        """A run's best value of the monitor, from its results; NaN if it has none."""
        return results.get(self.best_key, math.nan)

    def rank(self, value: float) -> float:
        """A sort key, best first; a missing (NaN) value last."""
        if math.isnan(value):
            return math.inf
        return -value if self.mode == "max" else value
