import copy
from functools import partial

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mnist_classifier.models import LeNet
from mnist_classifier.module import Classifier


def quiet_trainer(**settings) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **settings,
    )


def one_batch(size: int = 32, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(size, 1, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (size,), generator=generator)
    return DataLoader(TensorDataset(images, labels), batch_size=size)


def test_one_sgd_step_without_momentum_is_the_tutorials_manual_rule(compose_config) -> None:
    cfg = compose_config("optimizer=sgd", "optimizer.momentum=0")
    torch.manual_seed(0)
    net = LeNet()
    reference = copy.deepcopy(net)
    images, labels = next(iter(one_batch()))

    # The tutorial: weight = weight - learning_rate * gradient, for every parameter.
    nn.CrossEntropyLoss()(reference(images), labels).backward()
    expected = [p.detach() - cfg.optimizer.lr * p.grad for p in reference.parameters()]

    classifier = Classifier(net, nn.CrossEntropyLoss(), optimizer=instantiate(cfg.optimizer))
    quiet_trainer(max_steps=1, limit_val_batches=0).fit(classifier, train_dataloaders=one_batch())
    updated = list(net.parameters())
    assert len(updated) == len(expected) == 10
    for after, want in zip(updated, expected, strict=True):
        torch.testing.assert_close(after.detach(), want, rtol=0, atol=1e-6)


def test_overfits_one_batch() -> None:
    torch.manual_seed(0)
    classifier = Classifier(LeNet(), nn.CrossEntropyLoss(), optimizer=partial(torch.optim.Adam, lr=3e-3))
    trainer = quiet_trainer(max_epochs=150, limit_val_batches=0)
    trainer.fit(classifier, train_dataloaders=one_batch())
    assert trainer.callback_metrics["train/loss_epoch"] < 0.05
    assert trainer.callback_metrics["train/acc_epoch"] == 1.0


def test_val_acc_best_is_the_best_epoch_and_ignores_the_sanity_check() -> None:
    torch.manual_seed(0)
    classifier = Classifier(LeNet(), nn.CrossEntropyLoss(), optimizer=partial(torch.optim.Adam, lr=1e-2))
    seen = []

    class RecordValAcc(L.Callback):
        def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            if not trainer.sanity_checking:
                seen.append(module.val_acc.compute().item())

    # A perfect sanity-check score must not survive into training.
    classifier.val_acc_best.update(torch.tensor(2.0))
    trainer = quiet_trainer(max_epochs=6, callbacks=[RecordValAcc()])
    trainer.fit(classifier, train_dataloaders=one_batch(), val_dataloaders=one_batch(seed=1))
    assert trainer.callback_metrics["val/acc_best"].item() == pytest.approx(max(seen))
    assert trainer.callback_metrics["hp_metric"].item() == pytest.approx(max(seen))


def test_onecycle_is_given_the_runs_total_steps(compose_config) -> None:
    cfg = compose_config("scheduler=onecycle")
    classifier = Classifier(
        LeNet(),
        nn.CrossEntropyLoss(),
        instantiate(cfg.optimizer),
        instantiate(cfg.scheduler, _convert_="all"),
    )
    four_batches = DataLoader(
        TensorDataset(torch.randn(32, 1, 32, 32), torch.randint(0, 10, (32,))), batch_size=8
    )
    trainer = quiet_trainer(max_epochs=3, limit_val_batches=0)
    trainer.fit(classifier, train_dataloaders=four_batches)
    (scheduler_config,) = trainer.lr_scheduler_configs
    assert scheduler_config.interval == "step"
    assert scheduler_config.scheduler.total_steps == 12
    assert scheduler_config.scheduler.last_epoch == 12  # stepped once per optimizer step
