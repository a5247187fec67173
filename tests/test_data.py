from pathlib import Path

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import TensorDataset
from torchvision.datasets import MNIST

from mnist_classifier.data import MNIST_FILES, MNISTDataModule, TensorBatches

from .conftest import TINY_TEST, TINY_TRAIN, synthetic_digits


def make_datamodule(data_dir: Path, **overrides) -> MNISTDataModule:
    settings = {"val_size": 20, "batch_size": 16, "download": False} | overrides
    datamodule = MNISTDataModule(data_dir, **settings)
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def test_official_split_with_a_validation_cut_from_the_training_images(tiny_mnist: Path) -> None:
    datamodule = make_datamodule(tiny_mnist)
    assert len(datamodule.train_set) == TINY_TRAIN - 20
    assert len(datamodule.val_set) == 20
    assert len(datamodule.test_set) == TINY_TEST
    images, labels = datamodule.train_set.tensors
    assert images.shape == (TINY_TRAIN - 20, 1, 32, 32) and images.dtype == torch.float32
    # Every training label lands in exactly one of train and val.
    _, official_labels = synthetic_digits(TINY_TRAIN, seed=0)
    both = torch.cat([labels, datamodule.val_set.tensors[1]])
    assert torch.equal(both.bincount(minlength=10), official_labels.long().bincount(minlength=10))


def test_validation_split_is_the_same_in_every_run_whatever_the_global_seed(tiny_mnist: Path) -> None:
    torch.manual_seed(1)
    first = make_datamodule(tiny_mnist).val_set.tensors[0]
    torch.manual_seed(2)
    second = make_datamodule(tiny_mnist).val_set.tensors[0]
    assert torch.equal(first, second)
    other_split = make_datamodule(tiny_mnist, split_seed=1).val_set.tensors[0]
    assert not torch.equal(first, other_split)


def test_test_set_is_the_official_test_images_in_order(tiny_mnist: Path) -> None:
    datamodule = make_datamodule(tiny_mnist, resize="pad")
    official = MNIST(tiny_mnist, train=False)
    expected = TF.pad(official.data.unsqueeze(1).float() / 255, [2, 2, 2, 2])
    expected = (expected - datamodule.mean) / datamodule.std
    assert torch.allclose(datamodule.test_set.tensors[0], expected)
    assert torch.equal(datamodule.test_set.tensors[1], official.targets)


def test_images_are_normalised_with_training_statistics(tiny_mnist: Path) -> None:
    images = make_datamodule(tiny_mnist).train_set.tensors[0]
    assert images.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert images.std().item() == pytest.approx(1.0, abs=1e-4)


def test_bilinear_resize_matches_torchvision(tiny_mnist: Path) -> None:
    datamodule = make_datamodule(tiny_mnist)
    official = MNIST(tiny_mnist, train=False)
    first = official.data[:1].unsqueeze(1).float() / 255
    resized = TF.resize(first, [32, 32], TF.InterpolationMode.BILINEAR, antialias=True)
    restored = datamodule.test_set.tensors[0][:1] * datamodule.std + datamodule.mean
    assert torch.allclose(restored, resized, atol=1e-5)


def test_pad_mode_puts_a_two_pixel_zero_border_around_the_digit(tiny_mnist: Path) -> None:
    datamodule = make_datamodule(tiny_mnist, resize="pad")
    restored = datamodule.test_set.tensors[0] * datamodule.std + datamodule.mean
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
    # Validation and test in batches of eval_batch_size, the last one short.
    assert [len(y) for _, y in datamodule.val_dataloader()] == [8, 8, 4]
    assert [len(y) for _, y in datamodule.test_dataloader()] == [8] * (TINY_TEST // 8)


def numbered(count: int) -> TensorDataset:
    """Images whose only pixel is their index, so a batch shows which samples it holds."""
    return TensorDataset(torch.arange(count, dtype=torch.float32).view(count, 1, 1, 1), torch.arange(count))


def test_shuffled_batches_cover_every_sample_once_in_a_new_order_each_epoch() -> None:
    batches = TensorBatches(numbered(100), batch_size=32, shuffle=True, seed=7)
    first = torch.cat([labels for _, labels in batches])
    assert len(batches) == 4 and sorted(first.tolist()) == list(range(100))
    assert torch.equal(torch.cat([images.flatten() for images, _ in batches]).long(), first)
    assert torch.equal(torch.cat([labels for _, labels in batches]), first)  # same epoch, same order
    batches.set_epoch(1)
    second = torch.cat([labels for _, labels in batches])
    assert sorted(second.tolist()) == list(range(100)) and not torch.equal(first, second)


def test_evaluation_batches_keep_the_order() -> None:
    labels = torch.cat([labels for _, labels in TensorBatches(numbered(50), batch_size=16, shuffle=False)])
    assert labels.tolist() == list(range(50))


@pytest.mark.parametrize("shuffle", [True, False])
def test_processes_of_a_data_parallel_run_get_disjoint_shards(shuffle: bool) -> None:
    # 101 images over 2 processes: training shards of 50 each (equal step counts), evaluation
    # shards of 51 and 50 that together hold every image once.
    shards = [
        torch.cat(
            [
                labels
                for _, labels in TensorBatches(numbered(101), 8, shuffle, seed=3, rank=rank, world_size=2)
            ]
        )
        for rank in (0, 1)
    ]
    assert not set(shards[0].tolist()) & set(shards[1].tolist())
    if shuffle:
        assert len(shards[0]) == len(shards[1]) == 50
    else:
        assert sorted(torch.cat(shards).tolist()) == list(range(101))


def test_missing_files_name_the_directory_and_the_four_files(tmp_path: Path) -> None:
    datamodule = MNISTDataModule(tmp_path, download=False)
    with pytest.raises(FileNotFoundError) as error:
        datamodule.prepare_data()
    message = str(error.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert all(name in message for name in MNIST_FILES)
    assert "\n" not in message


def test_failed_download_is_reported_with_the_missing_files(tmp_path: Path, monkeypatch) -> None:
    # A mirror on a closed loopback port: the download fails at once, with or without internet.
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(FileNotFoundError, match=r"the download failed: .*train-images-idx3-ubyte"):
        MNISTDataModule(tmp_path).prepare_data()


def test_validation_split_must_leave_training_images(tiny_mnist: Path) -> None:
    with pytest.raises(
        ValueError, match=rf"val_size={TINY_TRAIN} is too large.*{TINY_TRAIN} training images"
    ):
        make_datamodule(tiny_mnist, val_size=TINY_TRAIN)


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("batch_size", 0, "batch_size=0 is invalid"),
        ("eval_batch_size", 0, "eval_batch_size=0 is invalid"),
        ("val_size", 0, "val_size=0 is invalid"),
        ("resize", "nearest", "resize='nearest' is unknown: choose one of bilinear, pad"),
        ("image_size", 0, "image_size=0 is too small"),
    ],
)
def test_bad_arguments_fail_with_a_message_naming_them(argument: str, value, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MNISTDataModule("unused", **{argument: value})


def test_pad_mode_needs_room_for_the_28_pixel_digit() -> None:
    with pytest.raises(ValueError, match="image_size=27 is too small for resize=pad: it must be >= 28"):
        MNISTDataModule("unused", image_size=27, resize="pad")


@pytest.fixture
def copied_mnist(tiny_mnist: Path, tmp_path: Path) -> Path:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        (raw / name).write_bytes((tiny_mnist / "MNIST" / "raw" / name).read_bytes())
    return tmp_path


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        (
            "train-images-idx3-ubyte",
            lambda data: b"\x1f\x8b\x08\x00" + data[4:],  # the start of a gzip file
            r"train-images-idx3-ubyte is not an MNIST IDX file: its magic number is 0x1f8b0800, "
            r"expected 0x00000803 \(unsigned bytes, 3 dimensions\)",
        ),
        (
            "t10k-labels-idx1-ubyte",
            lambda data: data[:5],
            r"t10k-labels-idx1-ubyte is truncated: 5 bytes, less than its 8-byte IDX header",
        ),
        (
            "train-images-idx3-ubyte",
            lambda data: data[:-100],
            rf"train-images-idx3-ubyte is truncated: {16 + TINY_TRAIN * 784 - 100} bytes where its header "
            rf"\({TINY_TRAIN} items\) needs {16 + TINY_TRAIN * 784}",
        ),
        (
            "train-labels-idx1-ubyte",
            lambda data: data + b"\x00",
            r"train-labels-idx1-ubyte has bytes beyond its data",
        ),
        (
            "train-images-idx3-ubyte",
            lambda data: data[:8] + (32).to_bytes(4, "big") + data[12:],
            r"train-images-idx3-ubyte holds items of shape \(32, 28\), expected \(28, 28\)",
        ),
        (
            "train-labels-idx1-ubyte",
            lambda data: data[:4] + (TINY_TRAIN - 1).to_bytes(4, "big") + data[8:-1],
            rf"train-images-idx3-ubyte holds {TINY_TRAIN} images but "
            rf".*train-labels-idx1-ubyte {TINY_TRAIN - 1} labels",
        ),
        (
            "t10k-labels-idx1-ubyte",
            lambda data: data[:-1] + b"\x0c",
            r"t10k-labels-idx1-ubyte holds label 12: MNIST's labels are 0 to 9",
        ),
    ],
    ids=["magic", "header-cut", "data-cut", "extra-bytes", "shape", "count-mismatch", "label-range"],
)
def test_a_corrupt_idx_file_is_refused_with_a_line_naming_it(
    copied_mnist: Path, name: str, change, message: str
) -> None:
    path = copied_mnist / "MNIST" / "raw" / name
    path.write_bytes(change(path.read_bytes()))
    with pytest.raises(ValueError, match=message) as error:
        make_datamodule(copied_mnist)
    assert "\n" not in str(error.value)
