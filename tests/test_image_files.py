"""Opening a user's image file: every allowed format decoded upright, transparency over white paper,
bad files refused in one line naming them, decompression bombs refused from their header."""

import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_classifier.errors import BadInput
from mnist_classifier.image_files import open_image
from mnist_classifier.mnist_format import grayscale, mnist_digit

from .drawings import INK, aligned_difference, box_of, encoded, page, png_header, ring


def test_exif_orientation_is_respected(tmp_path: Path) -> None:
    bar = page(lambda draw: draw.rectangle([60, 100, 240, 130], fill=INK))  # a wide bar, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: shown rotated 90 degrees clockwise
    path = tmp_path / "photo.jpg"
    path.write_bytes(encoded(bar, "JPEG", quality=95, exif=exif))
    assert open_image(path).size == (240, 300)
    height, width = box_of(mnist_digit(path), level=26)  # JPEG's faint halo aside
    assert abs(height - 20) <= 1 and width < 6  # an upright bar, as the viewer shows it


@pytest.mark.parametrize("format", ["PNG", "JPEG", "WEBP", "BMP", "TIFF"])
def test_each_format_decodes_to_the_same_digit(format: str) -> None:
    file = encoded(page(ring()), format, **({"quality": 95} if format in ("JPEG", "WEBP") else {}))
    gray = grayscale(open_image(file))
    assert np.abs(gray - np.asarray(page(ring()), dtype=np.float32) / 255).mean() < 0.01
    assert aligned_difference(mnist_digit(file), mnist_digit(page(ring()))) < 12  # up to a sub-pixel shift


def test_transparent_paper_counts_as_white() -> None:
    image = Image.new("LA", (200, 200), (0, 0))
    ImageDraw.Draw(image).ellipse([50, 50, 150, 150], outline=(0, 255), width=10)
    assert box_of(mnist_digit(image)) == (20, 20)


def test_a_missing_file_is_bad_input_and_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    with pytest.raises(FileNotFoundError) as raised:
        mnist_digit(path)
    assert isinstance(raised.value, BadInput)
    allowed = "PNG, JPEG, WebP, BMP or TIFF"
    assert str(raised.value) == f"{path} is invalid: there is no such file (give a {allowed} image)"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "it is empty"),
        (b"a note, not a picture\n", r"it is not an image \(PNG, JPEG, WebP, BMP or TIFF\)"),
        (encoded(page(ring()))[:400], "it is truncated or corrupt"),
    ],
    ids=["empty", "text", "truncated"],
)
def test_bad_files_are_refused_in_one_line_naming_them(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(content)
    with pytest.raises(BadInput, match=f"^{path} is invalid: {message}") as raised:
        mnist_digit(path)
    assert "\n" not in str(raised.value)


# Opens the image of argv[1] as predict.py would, then prints the refusal and the process's peak
# resident memory (kB, VmHWM: its own since exec, unlike getrusage's): what Pillow allocated is
# counted too, which Python's tracemalloc cannot see.
OPEN_AND_MEASURE = """
import re, sys
from mnist_classifier.errors import BadInput
from mnist_classifier.image_files import open_image
try:
    open_image(sys.argv[1])
except BadInput as error:
    print(error)
print(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
"""


def black_png(width: int, height: int) -> bytes:
    """A whole grey PNG of width x height black pixels: little to read, width * height bytes decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compressobj(9)
    data = b"".join(rows.compress(b"\0" * (width + 1)) for _ in range(height)) + rows.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


@pytest.mark.slow
@pytest.mark.parametrize(("width", "height"), [(12_000, 12_000), (30_000, 30_000)])
def test_a_decompression_bomb_is_refused_from_its_header_before_it_is_decoded(
    tmp_path: Path, width: int, height: int
) -> None:
    # 144 megapixels: under Pillow's own bomb limit, over ours; 900: over both.
    path = tmp_path / "big.png"
    path.write_bytes(black_png(width, height) if width * height < 2e8 else png_header(width, height))
    small = tmp_path / "small.png"
    small.write_bytes(black_png(100, 100))
    measured, said = {}, {}
    for name, image in (("big", path), ("small", small)):
        result = subprocess.run(
            [sys.executable, "-c", OPEN_AND_MEASURE, str(image)], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        *said[name], measured[name] = result.stdout.strip().splitlines()
    assert len(said["big"]) == 1 and re.match(
        f"^{path} is invalid: .*over the limit of 40,000,000", said["big"][0]
    )
    assert said["small"] == []  # opened: the measure's baseline
    assert int(measured["big"]) - int(measured["small"]) < 50_000  # kB: the big image was never decoded


def test_the_pixel_limit_is_set_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_MAX_PIXELS", "10000")
    with pytest.raises(BadInput, match=r"300x240 pixels is over the limit of 10,000 \(MNIST_MAX_PIXELS"):
        mnist_digit(encoded(page(ring())))
    monkeypatch.setenv("MNIST_MAX_PIXELS", "lots")
    with pytest.raises(BadInput, match=r"^MNIST_MAX_PIXELS=lots is invalid: give a whole number"):
        mnist_digit(encoded(page(ring())))
