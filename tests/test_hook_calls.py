"""hook_calls: Lightning's hook calls made cheap, with the same hooks run and the same checkpoints."""

from functools import partial
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, callbacks
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mnist_classifier.hook_calls import ModelCheckpoint, Unprofiled
from mnist_classifier.models import LeNet
from mnist_classifier.module import Classifier

from .test_module import as_in_a_run, quiet_trainer  # noqa: F401  (as_in_a_run: an autouse fixture)


class HookLog(Callback):
    """Records each hook Lightning calls on it, in order."""

    def __init__(self) -> None:
        self.called: list[str] = []

    def __getattribute__(self, name: str):
        if name.startswith("on_"):
            object.__getattribute__(self, "called").append(name)
        return object.__getattribute__(self, name)


def fit(tmp_path: Path, **settings) -> tuple[list[str], dict[str, torch.Tensor]]:
    """The hooks called in a short fit with validation, and the weights it trained."""
    torch.manual_seed(0)
    images, labels = torch.randn(48, 1, 32, 32), torch.randint(0, 10, (48,))
    batches = DataLoader(TensorDataset(images, labels), batch_size=8)
    classifier = Classifier(LeNet(), nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.01))
    log = HookLog()
    quiet_trainer(max_epochs=2, callbacks=[log], default_root_dir=tmp_path, **settings).fit(
        classifier, train_dataloaders=batches, val_dataloaders=batches
    )
    return log.called, classifier.state_dict()


def test_without_the_profilers_context_a_fit_calls_the_same_hooks_and_trains_the_same_weights(
    tmp_path: Path,
) -> None:
    hooks, weights = fit(tmp_path / "default")  # Lightning's PassThroughProfiler
    unprofiled_hooks, unprofiled_weights = fit(tmp_path / "unprofiled", profiler=Unprofiled())
    assert unprofiled_hooks == hooks and hooks.count("on_before_backward") == 12  # 6 steps an epoch
    assert weights.keys() == unprofiled_weights.keys()
    assert all(torch.equal(weights[name], unprofiled_weights[name]) for name in weights)


@pytest.mark.parametrize(
    "settings",
    [
        {"monitor": "val/acc", "mode": "max"},
        {"every_n_train_steps": 500},
        {"monitor": "val/loss", "every_n_epochs": 2, "save_top_k": 3},
    ],
)
def test_the_checkpoint_callbacks_state_key_is_lightnings_own(tmp_path: Path, settings: dict) -> None:
    # The key under which a checkpoint keeps the callback's state: a resumed run finds it only if
    # it is the same, whichever of the two classes wrote it.
    ours = ModelCheckpoint(dirpath=tmp_path, **settings)
    assert ours.state_key == callbacks.ModelCheckpoint(dirpath=tmp_path, **settings).state_key
    assert ours.state_key is ours.state_key  # formatted once
