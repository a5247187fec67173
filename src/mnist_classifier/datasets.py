"""The data sets in MNIST's format: where their IDX files are, reading them, downloading them.

Files are read from `<data_dir>/<folder>/raw/` (torchvision's layout), each either as its plain
IDX file or gzip'd (`.gz`, as the data sets are shipped and as Debian's packages install them).
Each file is checked before it is used: its magic number, its sizes, and that it holds exactly as
many bytes as its header says. A file that fails is refused with one line naming it.
"""

import gzip
import math
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mnist_classifier.errors import BadInput, one_line

if TYPE_CHECKING:  # imported where the images are read: the checks before a run need no torch
    import torch

UNSIGNED_BYTE = 0x08  # the IDX type code of MNIST's pixels and labels
GZIP_MAGIC = b"\x1f\x8b"
IMAGE_SIZE = 28  # the side of every image of these data sets
FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass(frozen=True)
class DataSet:
    """A data set in MNIST's IDX layout, as its YAML in conf/data/ declares it (the `dataset` node);
    every checkpoint carries it, so that inference knows the classes and where the test files are."""

    name: str
    folder: str  # <data_dir>/<folder>/raw/, as torchvision lays it out
    classes: tuple[str, ...]
    variable: str  # the environment variable that names its data dir
    torchvision_class: str | None = None  # the torchvision.datasets class that downloads it

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(str(name) for name in self.classes))


def default_data_dir(dataset: DataSet) -> Path:
    """The data dir the configs use: the data set's environment variable, else ./data."""
    return Path(os.environ.get(dataset.variable, "data"))


def read_bytes(path: Path) -> bytes:
    """A file's content, decompressed when it is gzip'd (as the data sets are shipped)."""
    data = path.read_bytes()
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise BadInput(f"{path} is invalid: not a readable gzip file ({error})") from error


def read_idx(path: Path, shape: tuple[int | None, ...]) -> "torch.Tensor":
    """The uint8 tensor an IDX file holds, refused with BadInput naming the file unless it is
    an IDX file of unsigned bytes with this shape (None: any size) and exactly as many bytes as
    its header says."""
    import numpy as np
    import torch

    data = read_bytes(path)
    sizes = idx_sizes(path, data, shape, len(data))
    pixels = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * len(shape))
    return torch.from_numpy(pixels.reshape(sizes).copy())


def idx_sizes(path: Path, data: bytes, shape: tuple[int | None, ...], length: int | None) -> tuple[int, ...]:
    """The sizes an IDX file's header gives (`data` starts with it), refused with BadInput unless they
    fit `shape` and the file's `length` in bytes (None: not known yet) is what they need."""
    header_size = 4 + 4 * len(shape)
    if len(data) < header_size:
        raise BadInput(
            f"{path} is invalid: it is truncated, {len(data)} bytes, less than its {header_size}-byte IDX "
            "header"
        )
    magic = int.from_bytes(data[:4], "big")
    expected_magic = UNSIGNED_BYTE << 8 | len(shape)
    if magic != expected_magic:
        raise BadInput(
            f"{path} is invalid: it is no IDX file of {len(shape)}-dimensional unsigned bytes (its magic "
            f"number is 0x{magic:08x}, expected 0x{expected_magic:08x})"
        )
    sizes = tuple(int.from_bytes(data[i : i + 4], "big") for i in range(4, header_size, 4))
    if any(want is not None and got != want for got, want in zip(sizes, shape, strict=True)):
        raise BadInput(f"{path} is invalid: its items have the shape {sizes[1:]}, expected {shape[1:]}")
    expected_size = header_size + math.prod(sizes)
    if length is not None and length != expected_size:
        problem = "it is truncated" if length < expected_size else "it has bytes beyond its data"
        raise BadInput(
            f"{path} is invalid: {problem}, {length} bytes where its header ({sizes[0]} items) needs "
            f"{expected_size}"
        )
    return sizes


def raw_dir(data_dir: str | Path, dataset: DataSet) -> Path:
    return Path(data_dir) / dataset.folder / "raw"


def find_file(folder: Path, name: str) -> Path | None:
    """The file as it is, or gzip'd."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def missing_files(data_dir: str | Path, dataset: DataSet) -> list[str]:
    folder = raw_dir(data_dir, dataset)
    return [name for name in FILES if find_file(folder, name) is None]


def not_there(data_dir: str | Path, dataset: DataSet, reason: str, missing: list[str]) -> BadInput:
    """The refusal of a data dir that lacks the data set's files, and why they were not downloaded."""
    return BadInput(
        f"data.data_dir={data_dir} is invalid: {dataset.name} is not in {raw_dir(data_dir, dataset)} and "
        f"{reason}; put the four files {', '.join(FILES)} there, plain or .gz (missing: "
        f"{', '.join(missing)}), or point data.data_dir or {dataset.variable} at a folder holding "
        f"{dataset.folder}/raw/"
    )


def download(data_dir: str | Path, dataset: DataSet) -> str | None:
    """Download the files with torchvision; None when that worked, else why not. A failed download
    leaves nothing behind: the folders it made are removed, so a later attempt starts clean (and a
    data folder linked in afterwards is not shadowed by an empty one)."""
    if dataset.torchvision_class is None:
        return f"{dataset.name} names no torchvision class to download it with"
    from torchvision import datasets  # only here: reading the files needs no torchvision

    data_dir = Path(data_dir)
    folder = raw_dir(data_dir, dataset)
    made = [path for path in (data_dir, data_dir / dataset.folder, folder) if not path.exists()]
    there = set(folder.iterdir()) if folder.is_dir() else set()
    try:
        for train in (True, False):
            getattr(datasets, dataset.torchvision_class)(data_dir, train=train, download=True)
    except (OSError, RuntimeError) as error:
        for path in set(folder.iterdir()) - there if folder.is_dir() else ():
            path.unlink()
        if made:  # the outermost folder that did not exist holds the others
            shutil.rmtree(made[0], ignore_errors=True)
        return f"the download failed: {one_line(error)}"
    return None


def split_files(data_dir: str | Path, dataset: DataSet, train: bool) -> tuple[Path, Path]:
    """The images and labels files of the training or test split; BadInput naming one that is missing."""
    folder = raw_dir(data_dir, dataset)
    images_name, labels_name = FILES[:2] if train else FILES[2:]
    images_file, labels_file = find_file(folder, images_name), find_file(folder, labels_name)
    if images_file is None or labels_file is None:
        missing = images_name if images_file is None else labels_name
        raise BadInput(f"{folder} is invalid: it lacks {missing} (plain or .gz)")
    return images_file, labels_file


def read_split(data_dir: str | Path, dataset: DataSet, train: bool) -> tuple["torch.Tensor", "torch.Tensor"]:
    """The official training or test split: uint8 images [N, 28, 28] and int64 labels [N]."""
    images_file, labels_file = split_files(data_dir, dataset, train)
    images = read_idx(images_file, (None, IMAGE_SIZE, IMAGE_SIZE))
    labels = read_idx(labels_file, (None,))
    check_count(labels_file, len(labels), images_file, len(images))
    check_labels(labels_file, int(labels.max()) if len(labels) else -1, dataset, every_class=train)
    return images, labels.long()


def training_split_size(data_dir: str | Path, dataset: DataSet) -> int:
    """The number of training images, from the files' headers and the labels (the images are not
    read: a plain file's size is checked against its header, a gzip'd one's when it is read), with
    the checks read_split makes of them; no torch, so that a run's data is checked before it starts."""
    images_file, labels_file = split_files(data_dir, dataset, train=True)
    labels = read_bytes(labels_file)
    (count,) = idx_sizes(labels_file, labels, (None,), len(labels))
    shape = (None, IMAGE_SIZE, IMAGE_SIZE)
    header, length = file_header(images_file, 4 + 4 * len(shape))
    images = idx_sizes(images_file, header, shape, length)[0]
    check_count(labels_file, count, images_file, images)
    check_labels(labels_file, max(labels[8:], default=-1), dataset, every_class=True)
    return count


def file_header(path: Path, size: int) -> tuple[bytes, int | None]:
    """A file's first `size` bytes, decompressed when it is gzip'd, and its length (None when gzip'd:
    known once it is decompressed)."""
    with path.open("rb") as file:
        start = file.read(size)
    if start[:2] != GZIP_MAGIC:
        return start, path.stat().st_size
    try:
        with gzip.open(path) as file:
            return file.read(size), None
    except (OSError, EOFError, zlib.error) as error:
        raise BadInput(f"{path} is invalid: not a readable gzip file ({error})") from error


def check_count(labels_file: Path, labels: int, images_file: Path, images: int) -> None:
    if images != labels:
        raise BadInput(
            f"{labels_file} is invalid: it holds {labels} labels for the {images} images of {images_file}"
        )


def check_labels(path: Path, highest: int, dataset: DataSet, every_class: bool) -> None:
    """Refuse labels that do not match the data set's classes: the highest label past the last class,
    or (in the training split, `every_class`) classes that no image has."""
    if highest >= len(dataset.classes) or (every_class and highest < len(dataset.classes) - 1):
        raise BadInput(
            f"{path} is invalid: its labels run 0 to {highest}, and data.dataset.classes names "
            f"{len(dataset.classes)} classes ({', '.join(dataset.classes)}); give one class per label"
        )
