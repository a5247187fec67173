"""An exponential moving average (EMA) of the classifier's weights, used wherever the run uses its
weights: validated every epoch (so the best checkpoint is the best average), saved as the
checkpoint's weights (so eval.py, predict.py, export.py and serve.py load the average), tested, and
kept as the net's weights when training ends. Before the average has started (`start_epoch`), the
net's own weights are validated and saved.

Lightning's EMAWeightAveraging does not hold to that: testing a checkpoint on the trainer that saved
it (train.py tests the best checkpoint after fit) restores the raw weights it keeps beside the
average, and before its first update it validates a copy of the initial weights. Its state is
private, so this callback is written on torch's AveragedModel and Lightning's public hooks.
"""

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

NET = "net."  # the classifier's net in its state dict (mnist_classifier.module.Classifier)
RAW_WEIGHTS = "raw_state_dict"  # the checkpoint's key for the trained weights themselves
AVERAGED = "averaged_steps"  # ... and for the number of steps averaged


def swap(first: nn.Module, second: nn.Module) -> None:
    """Exchange the weights (and buffers) of two modules of one architecture, in place."""
    for mine, theirs in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        held = mine.clone()
        mine.copy_(theirs)
        theirs.copy_(held)


class WeightAverage(Callback):
    """The average `decay * average + (1 - decay) * weights`, updated after every optimizer step from
    epoch `start_epoch` on, of the `net` of a Classifier."""

    def __init__(self, decay: float = 0.999, start_epoch: int = 0) -> None:
        self.decay, self.start_epoch = decay, start_epoch
        self.average: AveragedModel | None = None
        self.updated_at = -1  # the global step of the last update: one update an optimizer step

    @property
    def started(self) -> bool:
        return self.average is not None and int(self.average.n_averaged) > 0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            multi_avg_fn = get_ema_multi_avg_fn(self.decay)
            self.average = AveragedModel(pl_module.net, multi_avg_fn=multi_avg_fn, use_buffers=True)

    @torch.no_grad()
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.current_epoch >= self.start_epoch and trainer.global_step > self.updated_at:
            self.average.update_parameters(pl_module.net)
            self.updated_at = trainer.global_step

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.started:
            swap(pl_module.net, self.average.module)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.started:
            swap(pl_module.net, self.average.module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.started:
            pl_module.net.load_state_dict(self.average.module.state_dict())

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if not self.started:
            return
        average = {NET + name: value for name, value in self.average.module.state_dict().items()}
        checkpoint[RAW_WEIGHTS] = checkpoint["state_dict"]
        checkpoint["state_dict"] = checkpoint["state_dict"] | average
        checkpoint[AVERAGED] = int(self.average.n_averaged)

    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Resuming a fit: the average and the raw weights go on from the checkpoint. Testing or
        validating one: its weights, the average, are the ones Lightning loaded."""
        if RAW_WEIGHTS not in checkpoint or trainer.state.fn != TrainerFn.FITTING:
            return
        net = {name.removeprefix(NET): value for name, value in checkpoint["state_dict"].items()}
        self.average.module.load_state_dict({name: net[name] for name in self.average.module.state_dict()})
        self.average.n_averaged.fill_(checkpoint[AVERAGED])
        pl_module.load_state_dict(checkpoint[RAW_WEIGHTS])
        self.updated_at = checkpoint["global_step"]
