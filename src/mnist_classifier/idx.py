"""IDX files, the format of MNIST and Fashion-MNIST, read as uint8 tensors (plain or gzip'd).

Each file is checked before it is used: its magic number, its sizes, and that it holds exactly as
many bytes as its header says. A file that fails is refused with one line naming it.
"""

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

UNSIGNED_BYTE = 0x08  # the IDX type code of MNIST's pixels and labels
GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: Path) -> bytes:
    """A file's content, decompressed when it is gzip'd (as the data sets are shipped)."""
    data = path.read_bytes()
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path} is invalid: not a readable gzip file ({error})") from error


def read_idx(path: Path, shape: tuple[int | None, ...]) -> torch.Tensor:
    """The uint8 tensor an IDX file holds, refused with a ValueError naming the file unless it is
    an IDX file of unsigned bytes with this shape (None: any size) and exactly as many bytes as
    its header says."""
    data = read_bytes(path)
    header_size = 4 + 4 * len(shape)
    if len(data) < header_size:
        raise ValueError(
            f"{path} is invalid: it is truncated, {len(data)} bytes, less than its {header_size}-byte IDX "
            "header"
        )
    magic = int.from_bytes(data[:4], "big")
    expected_magic = UNSIGNED_BYTE << 8 | len(shape)
    if magic != expected_magic:
        raise ValueError(
            f"{path} is invalid: it is no IDX file of {len(shape)}-dimensional unsigned bytes (its magic "
            f"number is 0x{magic:08x}, expected 0x{expected_magic:08x})"
        )
    sizes = tuple(int.from_bytes(data[i : i + 4], "big") for i in range(4, header_size, 4))
    if any(want is not None and got != want for got, want in zip(sizes, shape, strict=True)):
        raise ValueError(f"{path} is invalid: its items have the shape {sizes[1:]}, expected {shape[1:]}")
    expected_size = header_size + math.prod(sizes)
    if len(data) != expected_size:
        problem = "it is truncated" if len(data) < expected_size else "it has bytes beyond its data"
        raise ValueError(
            f"{path} is invalid: {problem}, {len(data)} bytes where its header ({sizes[0]} items) needs "
            f"{expected_size}"
        )
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(sizes).copy())
