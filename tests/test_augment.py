"""Augmentation: batched random distortions of training batches, on their device, seeded."""

from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torch import nn

from mnist_classifier.augment import RandomAffine
from mnist_classifier.data import MNISTDataModule
from mnist_classifier.models import LeNet
from mnist_classifier.module import Classifier
from mnist_classifier.training import quiet_libraries

from .conftest import data_set


@pytest.fixture(autouse=True)
def as_in_a_run() -> None:
    """The library notes that train.py silences (training.quiet_libraries) silenced here too: these
    tests drive Lightning themselves."""
    quiet_libraries()


DISTORTIONS = {"rotation": 10, "scale": 0.1, "translate": 0.1, "shear": 10, "elastic": 1.5}


def digits(count: int = 16) -> torch.Tensor:
    """Normalised-looking images: a dark background (-0.5) with a bright off-centre block."""
    images = torch.full((count, 1, 32, 32), -0.5)
    images[:, :, 8:20, 10:16] = 2.5
    return images


def test_no_distortion_is_the_identity() -> None:
    images = digits()
    torch.testing.assert_close(RandomAffine(seed=1)(images, step=0), images, atol=1e-5, rtol=0)


def test_each_image_is_distorted_on_its_device_in_its_dtype_and_shape() -> None:
    images = digits().double()
    distorted = RandomAffine(**DISTORTIONS, seed=1)(images, step=0)
    assert (
        distorted.shape == images.shape
        and distorted.dtype == images.dtype
        and distorted.device == images.device
    )
    changed = (distorted - images).abs().flatten(1).amax(dim=1) > 0.1
    assert changed.all()  # every image, each its own way:
    assert len({tuple(image.flatten().round(decimals=3).tolist()) for image in distorted}) == len(images)
    assert distorted.min() >= images.min() - 1e-6  # the background stays the background, not zero


def test_the_same_seed_and_step_distort_identically_other_seeds_and_steps_differently() -> None:
    images = digits()
    augment = RandomAffine(**DISTORTIONS, seed=3)
    assert torch.equal(augment(images, step=5), RandomAffine(**DISTORTIONS, seed=3)(images, step=5))
    assert not torch.equal(augment(images, step=5), RandomAffine(**DISTORTIONS, seed=4)(images, step=5))
    assert not torch.equal(augment(images, step=5), augment(images, step=6))


def test_a_mirror_is_exact_and_a_shift_stays_within_its_range() -> None:
    images = digits()
    torch.testing.assert_close(
        RandomAffine(hflip=1.0)(images, step=0), TF.horizontal_flip(images), atol=1e-5, rtol=0
    )
    shifted = RandomAffine(translate=0.25, seed=2)(images, step=0) + 0.5
    columns = torch.arange(32.0)
    centre = (shifted.sum(dim=2).squeeze(1) * columns).sum(dim=1) / shifted.sum(dim=(1, 2, 3))
    original = 12.5  # the block's columns 10 to 15
    assert (centre - original).abs().max() <= 0.25 * 32 + 0.5
    assert (centre - original).abs().max() > 1  # it did move


def test_p_leaves_that_share_of_images_alone() -> None:
    images = digits(400)
    distorted = RandomAffine(rotation=30, p=0.25, seed=0)(images, step=0)
    untouched = ((distorted - images).abs().flatten(1).amax(dim=1) < 1e-5).float().mean()
    assert untouched == pytest.approx(0.75, abs=0.08)


def test_only_training_batches_are_distorted_and_the_model_sees_the_distorted_ones(tiny_mnist: Path) -> None:
    augment = RandomAffine(**DISTORTIONS, seed=0)
    datamodule = MNISTDataModule(
        tiny_mnist, data_set("mnist"), val_size=40, batch_size=16, download=False, augment=augment
    )
    seen: dict[str, list] = {"train": [], "val": []}

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            seen["train"].append((trainer.global_step, batch[0].clone(), batch[1].clone()))

        def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0) -> None:
            seen["val"].append(batch[0].clone())

    classifier = Classifier(LeNet(), nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.01))
    trainer = L.Trainer(
        max_epochs=1, limit_train_batches=2, logger=False, callbacks=[Record()], enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(classifier, datamodule=datamodule)
    plain = datamodule.train_dataloader()  # the batches of epoch 0 as cut, before augmentation
    plain.set_epoch(0)
    assert len(seen["train"]) == 2
    for (step, images, labels), (original, original_labels) in zip(seen["train"], plain, strict=False):
        assert torch.equal(labels, original_labels)
        torch.testing.assert_close(images, augment(original, step))
    assert torch.equal(torch.cat(seen["val"]), datamodule.val_set[0])  # validation as it is
