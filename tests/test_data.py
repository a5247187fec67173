"""The data: IDX files (plain and gzip'd), the data sets' folders and download, the data module's
split, resizing and normalisation, and the batches cut from tensors."""

import gzip
from pathlib import Path

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.datasets import MNIST

from mnist_classifier.batches import TensorBatches
from mnist_classifier.data import MNISTDataModule
from mnist_classifier.datasets import FILES, download, missing_files, read_idx, read_split
from mnist_classifier.errors import BadInput

from .conftest import (
    TINY_TEST,
    TINY_TRAIN,
    copy_dataset,
    data_set,
    synthetic_digits,
    write_idx,
    write_tiny_dataset,
)


def make_datamodule(data_dir: Path, dataset: str = "mnist", **overrides) -> MNISTDataModule:
    settings = {"val_size": 20, "batch_size": 16, "download": False} | overrides
    datamodule = MNISTDataModule(data_dir, data_set(dataset), **settings)
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def test_idx_files_read_the_same_plain_and_gzipped(tmp_path: Path) -> None:
    images, _ = synthetic_digits(7, seed=3)
    write_idx(tmp_path / "plain", images)
    (tmp_path / "packed.gz").write_bytes(gzip.compress((tmp_path / "plain").read_bytes()))
    assert torch.equal(read_idx(tmp_path / "plain", (None, 28, 28)), images)
    assert torch.equal(read_idx(tmp_path / "packed.gz", (None, 28, 28)), images)


def test_fashion_mnist_is_read_from_its_own_folder_gzipped_as_shipped(tmp_path: Path) -> None:
    raw = tmp_path / "FashionMNIST" / "raw"
    write_tiny_dataset(raw)
    for name in FILES:  # as Debian's dataset-fashion-mnist installs them: only the .gz files
        (raw / f"{name}.gz").write_bytes(gzip.compress((raw / name).read_bytes()))
        (raw / name).unlink()
    datamodule = make_datamodule(tmp_path, dataset="fashion_mnist")
    assert datamodule.classes[9] == "Ankle boot" and len(datamodule.test_set[1]) == TINY_TEST
    _, labels = synthetic_digits(TINY_TEST, seed=1)
    assert torch.equal(datamodule.test_set[1], labels.long())
    assert missing_files(tmp_path, data_set("mnist")) == list(FILES)  # MNIST's folder is another


def test_official_split_with_a_validation_cut_from_the_training_images(tiny_mnist: Path) -> None:
    datamodule = make_datamodule(tiny_mnist)
    images, labels = datamodule.train_set
    assert images.shape == (TINY_TRAIN - 20, 1, 32, 32) and images.dtype == torch.float32
    assert len(datamodule.val_set[1]) == 20 and len(datamodule.test_set[1]) == TINY_TEST
    # Every training label lands in exactly one of train and val.
    _, official_labels = synthetic_digits(TINY_TRAIN, seed=0)
    both = torch.cat([labels, datamodule.val_set[1]])
    assert torch.equal(both.bincount(minlength=10), official_labels.long().bincount(minlength=10))


def test_validation_split_is_the_same_in_every_run_whatever_the_global_seed(tiny_mnist: Path) -> None:
    torch.manual_seed(1)
    first = make_datamodule(tiny_mnist).val_set[0]
    torch.manual_seed(2)
    second = make_datamodule(tiny_mnist).val_set[0]
    assert torch.equal(first, second)
    assert not torch.equal(first, make_datamodule(tiny_mnist, split_seed=1).val_set[0])


def test_test_set_is_the_official_test_images_in_order(tiny_mnist: Path) -> None:
    datamodule = make_datamodule(tiny_mnist, resize="pad")
    official = MNIST(tiny_mnist, train=False)
    expected = TF.pad(official.data.unsqueeze(1).float() / 255, [2, 2, 2, 2])
    assert torch.allclose(datamodule.test_set[0], (expected - datamodule.mean) / datamodule.std)
    assert torch.equal(datamodule.test_set[1], official.targets)


def test_images_are_normalised_with_training_statistics(tiny_mnist: Path) -> None:
    images = make_datamodule(tiny_mnist).train_set[0]
    assert images.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert images.std().item() == pytest.approx(1.0, abs=1e-4)


def test_bilinear_resize_matches_torchvision(tiny_mnist: Path) -> None:
    datamodule = make_datamodule(tiny_mnist)
    first = MNIST(tiny_mnist, train=False).data[:1].unsqueeze(1).float() / 255
    resized = TF.resize(first, [32, 32], TF.InterpolationMode.BILINEAR, antialias=True)
    restored = datamodule.test_set[0][:1] * datamodule.std + datamodule.mean
    assert torch.allclose(restored, resized, atol=1e-5)


def test_pad_mode_puts_a_two_pixel_zero_border_around_the_digit(tiny_mnist: Path) -> None:
    datamodule = make_datamodule(tiny_mnist, resize="pad")
    restored = datamodule.test_set[0] * datamodule.std + datamodule.mean
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert restored[:, 0, border].abs().max() < 1e-5
    assert torch.allclose(
        restored[:, 0, 2:30, 2:30], MNIST(tiny_mnist, train=False).data.float() / 255, atol=1e-5
    )


def test_loaders_give_batches_of_the_configured_size(tiny_mnist: Path) -> None:
    datamodule = make_datamodule(tiny_mnist, batch_size=32, eval_batch_size=8)
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (32, 1, 32, 32) and labels.shape == (32,)
    assert [len(y) for _, y in datamodule.val_dataloader()] == [8, 8, 4]  # the last one short
    assert [len(y) for _, y in datamodule.test_dataloader()] == [8] * (TINY_TEST // 8)


def numbered(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose only pixel is their index, so a batch shows which samples it holds."""
    return torch.arange(count, dtype=torch.float32).view(count, 1, 1, 1), torch.arange(count)


def test_shuffled_batches_cover_every_sample_once_in_a_new_order_each_epoch() -> None:
    batches = TensorBatches(*numbered(100), batch_size=32, shuffle=True, seed=7)
    first = torch.cat([labels for _, labels in batches])
    assert len(batches) == 4 and sorted(first.tolist()) == list(range(100))
    assert torch.equal(torch.cat([images.flatten() for images, _ in batches]).long(), first)
    assert torch.equal(torch.cat([labels for _, labels in batches]), first)  # same epoch, same order
    batches.set_epoch(1)
    second = torch.cat([labels for _, labels in batches])
    assert sorted(second.tolist()) == list(range(100)) and not torch.equal(first, second)


def test_evaluation_batches_keep_the_order() -> None:
    labels = torch.cat([labels for _, labels in TensorBatches(*numbered(50), batch_size=16, shuffle=False)])
    assert labels.tolist() == list(range(50))


@pytest.mark.parametrize("shuffle", [True, False])
def test_processes_of_a_data_parallel_run_get_disjoint_shards(shuffle: bool) -> None:
    # 101 images over 2 processes: training shards of 50 each (equal step counts), evaluation
    # shards of 51 and 50 that together hold every image once.
    shards = [
        torch.cat(
            [
                labels
                for _, labels in TensorBatches(*numbered(101), 8, shuffle, seed=3, rank=rank, world_size=2)
            ]
        )
        for rank in (0, 1)
    ]
    assert not set(shards[0].tolist()) & set(shards[1].tolist())
    if shuffle:
        assert len(shards[0]) == len(shards[1]) == 50
    else:
        assert sorted(torch.cat(shards).tolist()) == list(range(101))


def test_a_loader_restored_mid_epoch_goes_on_with_the_batches_not_yet_taken() -> None:
    batches = TensorBatches(*numbered(100), batch_size=10, shuffle=True, seed=5)
    batches.set_epoch(3)
    epoch = [labels for _, labels in batches]
    batches.taken = 4  # what the data module counts as training takes batches
    resumed = TensorBatches(*numbered(100), batch_size=10, shuffle=True, seed=5)
    resumed.load_state_dict(batches.state_dict())
    resumed.set_epoch(3)  # as Lightning does at the start of the resumed epoch
    assert [labels.tolist() for _, labels in resumed] == [labels.tolist() for labels in epoch[4:]]
    assert len([labels for _, labels in resumed]) == 10  # the next epoch is whole again


def test_a_failed_download_leaves_no_folders_behind(tmp_path: Path, monkeypatch) -> None:
    # A mirror on a closed loopback port: the download fails at once, with or without internet.
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])
    reason = download(tmp_path / "data", data_set("mnist"))
    assert reason is not None and reason.startswith("the download failed")
    assert not (tmp_path / "data").exists()
    (tmp_path / "kept").mkdir()
    download(tmp_path / "kept", data_set("mnist"))
    assert list((tmp_path / "kept").iterdir()) == []  # a folder the user made stays, emptied of ours


def test_missing_files_are_refused_naming_the_folder_and_the_four_files(tmp_path: Path) -> None:
    with pytest.raises(BadInput) as error:
        MNISTDataModule(tmp_path, data_set("mnist"), download=False).prepare_data()
    message = str(error.value)
    assert message.startswith(f"data.data_dir={tmp_path} is invalid: mnist is not in {tmp_path}/MNIST/raw")
    assert all(name in message for name in FILES) and "MNIST_DATA_DIR" in message and "\n" not in message


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        (
            "train-images-idx3-ubyte",
            lambda data: b"\x00\x00\x08\x01" + data[4:],
            r"train-images-idx3-ubyte is invalid: it is no IDX file of 3-dimensional unsigned bytes "
            r"\(its magic number is 0x00000801, expected 0x00000803\)",
        ),
        (
            "t10k-labels-idx1-ubyte",
            lambda data: data[:5],
            r"t10k-labels-idx1-ubyte is invalid: it is truncated, 5 bytes, less than its 8-byte IDX header",
        ),
        (
            "train-images-idx3-ubyte",
            lambda data: data[:-100],
            rf"train-images-idx3-ubyte is invalid: it is truncated, {16 + TINY_TRAIN * 784 - 100} bytes "
            rf"where its header \({TINY_TRAIN} items\) needs {16 + TINY_TRAIN * 784}",
        ),
        (
            "train-labels-idx1-ubyte",
            lambda data: data + b"\x00",
            r"train-labels-idx1-ubyte is invalid: it has bytes beyond",
        ),
        (
            "train-images-idx3-ubyte",
            lambda data: data[:8] + (32).to_bytes(4, "big") + data[12:],
            r"train-images-idx3-ubyte is invalid: its items have the shape \(32, 28\), expected \(28, 28\)",
        ),
        (
            "train-labels-idx1-ubyte",
            lambda data: data[:4] + (TINY_TRAIN - 1).to_bytes(4, "big") + data[8:-1],
            rf"train-labels-idx1-ubyte is invalid: it holds {TINY_TRAIN - 1} labels for the "
            rf"{TINY_TRAIN} images",
        ),
        (
            "t10k-labels-idx1-ubyte",
            lambda data: data[:-1] + b"\x0c",
            r"t10k-labels-idx1-ubyte is invalid: its labels run 0 to 12, and data.dataset.classes names 10 "
            r"classes \(0, 1, 2, 3, 4, 5, 6, 7, 8, 9\); give one class per label",
        ),
        (
            "t10k-labels-idx1-ubyte",
            lambda data: b"\x1f\x8b" + data[2:],
            r"t10k-labels-idx1-ubyte is invalid: not a readable gzip",
        ),
    ],
    ids=[
        "magic",
        "header-cut",
        "data-cut",
        "extra-bytes",
        "shape",
        "count-mismatch",
        "label-range",
        "bad-gzip",
    ],
)
def test_a_corrupt_idx_file_is_refused_with_a_line_naming_it(
    tiny_mnist: Path, tmp_path: Path, name: str, change, message: str
) -> None:
    data_dir = copy_dataset(tiny_mnist, tmp_path)
    path = data_dir / "MNIST" / "raw" / name
    path.write_bytes(change(path.read_bytes()))
    with pytest.raises(ValueError, match=message) as error:
        read_split(data_dir, data_set("mnist"), train=name.startswith("train"))
    assert "\n" not in str(error.value)


DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist


@pytest.mark.slow
def test_the_real_fashion_mnist_reads_as_debian_ships_it(tmp_path: Path) -> None:
    missing = "Fashion-MNIST is not installed: make system (or apt-get install -y dataset-fashion-mnist)"
    assert DEBIAN_FASHION_MNIST.is_dir(), missing
    (tmp_path / "FashionMNIST").mkdir()
    (tmp_path / "FashionMNIST" / "raw").symlink_to(DEBIAN_FASHION_MNIST)
    images, labels = read_split(tmp_path, data_set("fashion_mnist"), train=False)
    assert images.shape == (10_000, 28, 28) and images.dtype == torch.uint8
    assert labels.bincount().tolist() == [1000] * 10  # its test set: 1,000 of each kind
    train_images, train_labels = read_split(tmp_path, data_set("fashion_mnist"), train=True)
    assert len(train_images) == len(train_labels) == 60_000
