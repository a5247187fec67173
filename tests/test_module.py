import copy
import csv
from functools import partial

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mnist_classifier.models import LeNet
from mnist_classifier.module import Classifier
from mnist_classifier.training import quiet_libraries


@pytest.fixture(autouse=True)
def as_in_a_run() -> None:
    """The library notes that train.py silences (training.quiet_libraries) silenced here too: these
    tests drive Lightning themselves."""
    quiet_libraries()


def quiet_trainer(**settings) -> L.Trainer:
    """A trainer that saves nothing and logs nothing unless given a `logger`. The fits that only train
    pass `val_dataloaders=[]`: no validation, said so, rather than Lightning's note that the
    classifier's validation_step is unused."""
    quiet = {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return L.Trainer(**(quiet | settings))


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
    quiet_trainer(max_steps=1, limit_val_batches=0).fit(classifier, one_batch(), val_dataloaders=[])
    updated = list(net.parameters())
    assert len(updated) == len(expected) == 10
    for after, want in zip(updated, expected, strict=True):
        torch.testing.assert_close(after.detach(), want, rtol=0, atol=1e-6)


def test_overfits_one_batch() -> None:
    torch.manual_seed(0)
    classifier = Classifier(LeNet(), nn.CrossEntropyLoss(), optimizer=partial(torch.optim.Adam, lr=1e-2))
    trainer = quiet_trainer(max_epochs=40, limit_val_batches=0)
    trainer.fit(classifier, train_dataloaders=one_batch(), val_dataloaders=[])
    assert trainer.callback_metrics["train/loss_epoch"] < 0.05
    assert trainer.callback_metrics["train/acc"] == 1.0


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


def test_val_acc_best_is_kept_in_the_state_dict_so_a_resumed_run_keeps_it() -> None:
    def new() -> Classifier:
        return Classifier(LeNet(), nn.CrossEntropyLoss(), optimizer=partial(torch.optim.SGD, lr=0.1))

    trained = new()
    trained.val_acc_best.update(torch.tensor(0.75))
    resumed = new()
    resumed.load_state_dict(trained.state_dict())
    resumed.val_acc_best.update(torch.tensor(0.5))  # a worse epoch after the resume
    assert resumed.val_acc_best.compute().item() == 0.75


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
    trainer.fit(classifier, train_dataloaders=four_batches, val_dataloaders=[])
    (scheduler_config,) = trainer.lr_scheduler_configs
    assert scheduler_config.interval == "step"
    assert scheduler_config.scheduler.total_steps == 12
    assert scheduler_config.scheduler.last_epoch == 12  # stepped once per optimizer step


def test_training_curves_log_the_step_loss_every_n_steps_and_the_epoch_means(tmp_path) -> None:
    torch.manual_seed(0)
    images, labels = torch.randn(48, 1, 32, 32), torch.randint(0, 10, (48,))
    batches = DataLoader(TensorDataset(images, labels), batch_size=8)  # 6 steps an epoch
    losses: list[float] = []

    class RecordingClassifier(Classifier):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            losses.append(loss.item())
            return loss

    classifier = RecordingClassifier(LeNet(), nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.01))
    trainer = quiet_trainer(
        max_epochs=2,
        limit_val_batches=0,
        log_every_n_steps=4,
        logger=L.pytorch.loggers.CSVLogger(tmp_path, name="", version=""),
    )
    trainer.fit(classifier, train_dataloaders=batches, val_dataloaders=[])
    with open(tmp_path / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    step_rows = [row for row in rows if row["train/loss_step"]]
    # Steps 3, 7 and 11 (0-based) are the logging steps of 12, each with that step's loss.
    assert [int(row["step"]) for row in step_rows] == [3, 7, 11]
    for row in step_rows:
        assert float(row["train/loss_step"]) == pytest.approx(losses[int(row["step"])], rel=1e-5)
    epoch_rows = [row for row in rows if row["train/loss_epoch"]]
    assert [float(row["train/loss_epoch"]) for row in epoch_rows] == pytest.approx(
        [sum(losses[:6]) / 6, sum(losses[6:]) / 6], rel=1e-5
    )
    assert all(0 <= float(row["train/acc"]) <= 1 for row in epoch_rows)


def test_train_acc_is_the_share_of_each_epochs_training_predictions_that_were_right(tmp_path) -> None:
    torch.manual_seed(0)
    images, labels = torch.randn(44, 1, 32, 32), torch.randint(0, 10, (44,))
    images[torch.arange(44), 0, 3 * labels] += 3  # a bright row per class: learnt within the epochs
    batches = DataLoader(TensorDataset(images, labels), batch_size=8, shuffle=True)  # 6, the last of 4 images
    right: list[list[bool]] = [[], [], []]  # each epoch's predictions, as the step made them

    class RecordingClassifier(Classifier):
        def training_step(self, batch, batch_idx):
            with torch.no_grad():
                predictions = self(batch[0]).argmax(dim=1)
            right[self.current_epoch] += (predictions == batch[1]).tolist()
            return super().training_step(batch, batch_idx)

    classifier = RecordingClassifier(LeNet(), nn.CrossEntropyLoss(), partial(torch.optim.Adam, lr=1e-2))
    trainer = quiet_trainer(
        max_epochs=3,
        limit_val_batches=0,
        log_every_n_steps=6,  # an epoch's steps
        logger=L.pytorch.loggers.CSVLogger(tmp_path, name="", version=""),
    )
    trainer.fit(classifier, train_dataloaders=batches, val_dataloaders=[])
    with open(tmp_path / "metrics.csv") as file:
        logged = [float(row["train/acc"]) for row in csv.DictReader(file) if row["train/acc"]]
    by_hand = [sum(epoch) / len(epoch) for epoch in right]
    assert [len(epoch) for epoch in right] == [44, 44, 44]
    assert len(set(by_hand)) == 3  # the epochs differ: another epoch's value, or a mean over two, fails
    assert logged == pytest.approx(by_hand, abs=1e-6)


def test_validation_loss_and_accuracy_are_means_over_images_whatever_the_batch_sizes() -> None:
    torch.manual_seed(0)
    images, labels = torch.randn(20, 1, 32, 32), torch.randint(0, 10, (20,))
    classifier = Classifier(LeNet(), nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.01))
    # Batches of 8, 8 and 4: a mean of the three batch means would weigh the last images double.
    results = quiet_trainer().validate(classifier, DataLoader(TensorDataset(images, labels), batch_size=8))
    with torch.no_grad():
        logits = classifier(images)
    assert results[0]["val/loss"] == pytest.approx(
        nn.functional.cross_entropy(logits, labels).item(), rel=1e-5
    )
    assert results[0]["val/acc"] == pytest.approx((logits.argmax(dim=1) == labels).float().mean().item())


def test_channels_last_changes_the_memory_layout_not_the_outputs() -> None:
    torch.manual_seed(0)
    net = LeNet()
    reference = copy.deepcopy(net)
    classifier = Classifier(net, nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.01), channels_last=True)
    assert classifier.net.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.randn(4, 1, 32, 32)
    torch.testing.assert_close(classifier(images), reference(images))


class TracedLeNet(LeNet):
    """LeNet that notes whether each forward ran inside torch.compile's tracing."""

    compiled_calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            TracedLeNet.compiled_calls += 1
        return super().forward(x)


@pytest.mark.slow
def test_a_compiled_net_runs_compiled_with_the_uncompiled_outputs() -> None:
    torch.manual_seed(0)
    net = TracedLeNet()
    reference = copy.deepcopy(net)
    classifier = Classifier(net, nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.01), compile=True)
    images = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        outputs = classifier(images)
    assert TracedLeNet.compiled_calls >= 1  # traced by torch.compile, not run as it is
    torch.testing.assert_close(outputs, reference(images), rtol=1e-4, atol=1e-5)


def test_a_compiled_net_keeps_the_state_dict_keys_so_its_checkpoints_load_uncompiled() -> None:
    def keys(compile: bool) -> list[str]:
        classifier = Classifier(
            LeNet(), nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.01), compile=compile
        )
        return list(classifier.state_dict())

    assert keys(compile=True) == keys(compile=False)
