"""MNIST's preprocessing of any image: each step on synthetic pages of known polarity, place and size,
bad files refused with one line, MNIST's own digits left as they are, numbers read left to right."""

import importlib.util
import io
import os
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from scipy import ndimage
from torchvision.datasets import MNIST

from mnist_classifier import images
from mnist_classifier.errors import BadInput
from mnist_classifier.images import mnist_digit, mnist_digits_of_number

from .conftest import ROOT

PAPER, INK = 225, 40  # grey levels of a pen's ink on paper, neither pure


def wild_digits_module():
    """benchmarks/wild_digits.py, imported as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("wild_digits", ROOT / "benchmarks" / "wild_digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mnist_test() -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST's test digits and labels, from $MNIST_DATA_DIR or the shared copy; skipped where absent."""
    data_dir = Path(os.environ.get("MNIST_DATA_DIR", "/work/shared/data"))
    if not (data_dir / "MNIST" / "raw" / "t10k-images-idx3-ubyte").exists():
        pytest.skip(f"MNIST's test set is not in {data_dir}/MNIST/raw")
    test_set = MNIST(str(data_dir), train=False)
    return test_set.data, test_set.targets


def page(draw: Callable[[ImageDraw.ImageDraw], None], size: tuple[int, int] = (300, 240)) -> Image.Image:
    """A grey page (width, height) with dark ink drawn on it by `draw`."""
    image = Image.new("L", size, PAPER)
    draw(ImageDraw.Draw(image))
    return image


def ring(left: int = 60, top: int = 50, size: int = 100) -> Callable[[ImageDraw.ImageDraw], None]:
    """A pen's '0': a circle of 12-pixel strokes in a size x size box."""
    return lambda draw: draw.ellipse([left, top, left + size, top + size], outline=INK, width=12)


def ell(draw: ImageDraw.ImageDraw) -> None:
    """An 'L' of 121 x 81 pixels, its mass far from the centre of its box."""
    draw.rectangle([100, 40, 115, 160], fill=INK)
    draw.rectangle([100, 145, 180, 160], fill=INK)


def encoded(image: Image.Image, format: str = "PNG", **options) -> bytes:
    """The image as a file's bytes."""
    file = io.BytesIO()
    image.save(file, format, **options)
    return file.getvalue()


def centre_of_mass(digit: torch.Tensor) -> tuple[float, float]:
    """The digit's centre of mass (row, column), its grey levels the mass."""
    return ndimage.center_of_mass(digit.numpy().astype(float))


def box_of(digit: torch.Tensor, level: int = 1) -> tuple[int, int]:
    """The (height, width) of the digit's pixels of at least `level`."""
    rows, columns = np.nonzero(digit.numpy() >= level)
    return int(np.ptp(rows)) + 1, int(np.ptp(columns)) + 1


def aligned_difference(digit: torch.Tensor, other: torch.Tensor) -> float:
    """The mean absolute difference of two digits' grey levels, the digits aligned to the pixel (a lossy
    file may move the centre of mass across a pixel's edge)."""
    shifts = [(rows, columns) for rows in (-1, 0, 1) for columns in (-1, 0, 1)]
    return min((digit.float() - other.roll(shift, (0, 1)).float()).abs().mean().item() for shift in shifts)


def png_header(width: int, height: int) -> bytes:
    """A PNG's signature and header chunk declaring width x height grey pixels, then a little data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def test_dark_ink_on_light_paper_is_inverted_and_light_on_dark_kept() -> None:
    dark_on_light = page(ring())
    digit = mnist_digit(dark_on_light)
    assert digit.dtype == torch.uint8 and digit.shape == (28, 28)
    assert digit[0].max() == 0 and digit[:, 0].max() == 0 and digit.max() > 200  # light digit on black
    assert torch.equal(mnist_digit(Image.eval(dark_on_light, lambda level: 255 - level)), digit)


def test_light_on_dark_inverts_by_the_dominant_level() -> None:
    paper = np.full((50, 50), 0.9, dtype=np.float32)
    paper[20:30, 10:40] = 0.1
    assert images.light_on_dark(paper)[0, 0] == pytest.approx(0.1)
    assert images.light_on_dark(1 - paper)[0, 0] == pytest.approx(0.1)


def test_the_digit_is_scaled_to_20_pixels_and_centred_by_its_mass_not_its_box() -> None:
    digit = mnist_digit(page(ell))
    assert box_of(digit) == (20, 13)  # 121 x 81 pixels: the longer side 20, the aspect kept
    row, column = centre_of_mass(digit)
    assert abs(row - 14) <= 0.5 and abs(column - 14) <= 0.5
    rows, columns = np.nonzero(digit.numpy())  # the mass is low and left in the L's box: the box is
    assert rows.min() + rows.max() < 27 and columns.min() + columns.max() > 27  # above and right of centre


def test_grey_levels_are_kept_not_binarised() -> None:
    levels = torch.unique(mnist_digit(page(ring(size=150)).resize((120, 96), Image.Resampling.BILINEAR)))
    assert len(levels) > 20  # anti-aliased edges, as MNIST's


def test_specks_and_far_away_marks_are_ignored() -> None:
    clean = mnist_digit(page(ring()))

    def specks(draw: ImageDraw.ImageDraw) -> None:
        ring()(draw)
        for x, y in [(10, 10), (250, 30), (30, 200), (200, 120), (280, 220)]:
            draw.ellipse([x, y, x + 3, y + 3], fill=INK)
        draw.line([230, 200, 260, 210], fill=INK, width=5)  # a small mark far from the digit

    assert torch.equal(mnist_digit(page(specks)), clean)


def lighting(image: Image.Image, shadow: float) -> Image.Image:
    """The page under light falling off across it, with a shadow `shadow` of the width at its left edge."""
    pixels = np.asarray(image, dtype=np.float32)
    height, width = pixels.shape
    light = np.linspace(1.0, 0.6, width)[None, :] * np.linspace(1.0, 0.85, height)[:, None]
    light[:, : round(shadow * width)] *= 0.55
    return Image.fromarray(np.rint(pixels * light).astype(np.uint8))


@pytest.mark.parametrize("shadow", [0.05, 0.15])
def test_uneven_lighting_and_a_shadow_at_the_edge_are_not_ink(shadow: float) -> None:
    clean = mnist_digit(page(ring()))
    lit = mnist_digit(lighting(page(ring()), shadow))
    assert box_of(lit) == box_of(clean)
    assert (lit.float() - clean.float()).abs().mean() < 8


def test_a_slanted_shadow_along_the_edge_is_not_ink() -> None:
    clean = mnist_digit(page(ring(120, 60)))
    shadowed = page(
        lambda draw: [ring(120, 60)(draw), draw.polygon([(0, 0), (25, 0), (70, 239), (0, 239)], fill=110)]
    )
    assert aligned_difference(mnist_digit(shadowed), clean) < 5


def noisy(image: Image.Image, sigma: float) -> Image.Image:
    """The image with Gaussian noise of `sigma` grey levels."""
    noise = np.random.default_rng(0).normal(0, sigma, (image.height, image.width))
    return Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("sigma", [4, 30])
def test_a_blank_page_noisy_and_in_uneven_light_has_no_digit(sigma: float) -> None:
    with pytest.raises(BadInput, match=r"^the image is invalid: no digit found \(the page has no ink\)"):
        mnist_digit(lighting(noisy(page(lambda draw: None), sigma), 0.1))


def test_noise_is_not_ink() -> None:
    clean = mnist_digit(page(ring()))
    assert aligned_difference(mnist_digit(noisy(page(ring()), 15)), clean) < 15
    assert aligned_difference(mnist_digit(page(ring(size=70))), clean) > 15  # what the tolerance tells apart


def test_exif_orientation_is_respected(tmp_path: Path) -> None:
    bar = page(lambda draw: draw.rectangle([60, 100, 240, 130], fill=INK))  # a wide bar, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: shown rotated 90 degrees clockwise
    path = tmp_path / "photo.jpg"
    path.write_bytes(encoded(bar, "JPEG", quality=95, exif=exif))
    assert images.open_image(path).size == (240, 300)
    height, width = box_of(mnist_digit(path), level=26)  # JPEG's faint halo aside
    assert abs(height - 20) <= 1 and width < 6  # an upright bar, as the viewer shows it


@pytest.mark.parametrize("format", ["PNG", "JPEG", "WEBP", "BMP", "TIFF"])
def test_each_format_decodes_to_the_same_digit(format: str) -> None:
    file = encoded(page(ring()), format, **({"quality": 95} if format in ("JPEG", "WEBP") else {}))
    gray = images.grayscale(images.open_image(file))
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


@pytest.mark.parametrize(("width", "height"), [(10_000, 5_000), (30_000, 30_000)])
def test_a_decompression_bomb_is_refused_from_its_header(tmp_path: Path, width: int, height: int) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(png_header(width, height))
    tracemalloc.start()
    try:
        with pytest.raises(BadInput, match=f"^{path} is invalid: .*over the limit of 40,000,000"):
            mnist_digit(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # the 50- or 900-megapixel image was never allocated


def test_the_pixel_limit_is_set_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_MAX_PIXELS", "10000")
    with pytest.raises(BadInput, match=r"300x240 pixels is over the limit of 10,000 \(MNIST_MAX_PIXELS"):
        mnist_digit(encoded(page(ring())))
    monkeypatch.setenv("MNIST_MAX_PIXELS", "lots")
    with pytest.raises(BadInput, match=r"^MNIST_MAX_PIXELS=lots is invalid: give a whole number"):
        mnist_digit(encoded(page(ring())))


def test_mnist_digits_as_png_are_left_as_they_are(mnist_test: tuple[torch.Tensor, ...]) -> None:
    digits = mnist_test[0][:50]
    read = torch.stack([mnist_digit(encoded(Image.fromarray(digit.numpy()))) for digit in digits])
    differences = (read.int() - digits.int()).abs().amax(dim=(1, 2))
    assert (differences <= 3).float().mean() >= 0.9  # the same digit up to rounding


def row(*draws: Callable[[ImageDraw.ImageDraw], None]) -> Image.Image:
    """A page with the drawings on it, one after another."""
    return page(lambda draw: [each(draw) for each in draws], size=(640, 240))


def stem(left: int) -> Callable[[ImageDraw.ImageDraw], None]:
    """A 7's stem alone."""
    return lambda draw: draw.line([left + 60, 84, left + 25, 170], fill=INK, width=12)


def broken_seven(left: int) -> Callable[[ImageDraw.ImageDraw], None]:
    """A '7' of two strokes that do not touch: the bar, and below it the stem."""

    def draw(canvas: ImageDraw.ImageDraw) -> None:
        canvas.rectangle([left, 60, left + 70, 72], fill=INK)
        stem(left)(canvas)

    return draw


def block(left: int) -> Callable[[ImageDraw.ImageDraw], None]:
    """A filled 50 x 110 block."""
    return lambda draw: draw.rectangle([left, 60, left + 50, 170], fill=INK)


def nearest(digit: torch.Tensor, templates: list[torch.Tensor]) -> int:
    """Which template the digit is closest to."""
    return int(np.argmin([(digit.float() - template.float()).abs().mean() for template in templates]))


def test_a_number_is_read_left_to_right_with_its_broken_and_touching_digits() -> None:
    shapes = (ring(size=110), broken_seven(100), block(100), stem(100))
    templates = [mnist_digit(page(each)) for each in shapes]  # the stem: a 7 read without its bar

    def joined_rings(draw: ImageDraw.ImageDraw) -> None:  # two rings touching through a pen's stroke
        ring(340, 60, 110)(draw)
        ring(470, 60, 110)(draw)
        draw.line([445, 115, 475, 115], fill=INK, width=4)

    # ring, broken 7, block, then two rings touching: five digits
    number = row(ring(20, 60, 110), broken_seven(160), block(260), joined_rings)
    digits = mnist_digits_of_number(number)
    assert [nearest(digit, templates) for digit in digits] == [0, 1, 2, 0, 0]


def test_a_judge_picks_the_cut_whose_digits_it_is_surest_of() -> None:
    one, two = [torch.zeros(28, 28, dtype=torch.uint8)], [torch.ones(28, 28, dtype=torch.uint8)] * 2

    def judge(digits: torch.Tensor) -> torch.Tensor:  # sure of the two halves, not of the whole
        sure = 0.99 if digits.float().mean() > 0 else 0.6
        return torch.tensor([[sure] + [(1 - sure) / 9] * 9] * len(digits))

    assert images.surest([one, two], judge) is two
    assert images.surest([two, one], lambda digits: judge(1 - digits)) is one


def test_a_page_without_ink_has_no_number() -> None:
    with pytest.raises(BadInput, match="no digit found"):
        mnist_digits_of_number(page(lambda draw: None), name="blank.png")


def test_wild_digits_are_made_by_the_seed_and_read_back(mnist_test: tuple[torch.Tensor, ...]) -> None:
    wild = wild_digits_module()
    digits = mnist_test[0][:4]
    for condition in wild.CONDITIONS:
        first = wild.wild_digit(digits[0], condition, np.random.default_rng(1))
        again = wild.wild_digit(digits[0], condition, np.random.default_rng(1))
        assert np.array_equal(np.asarray(first), np.asarray(again))
        assert first.size[0] >= (28 if condition == "mnist" else 4 * 20)
    templates = [mnist_digit(encoded(Image.fromarray(digit.numpy()))) for digit in digits]
    number = wild.wild_number(list(digits), np.random.default_rng(0))
    assert [nearest(digit, templates) for digit in mnist_digits_of_number(number)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="condition='sketch' is invalid"):
        wild.wild_digit(digits[0], "sketch", np.random.default_rng(0))


def test_the_benchmark_table_counts_each_condition(mnist_test: tuple[torch.Tensor, ...]) -> None:
    wild = wild_digits_module()

    def always_seven(digits: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.full((len(digits),), 7), 10).float()

    results = wild.accuracies(always_seven, *mnist_test, count=4, seed=0)
    assert {name: count for name, (count, _) in results.items()}["numbers"] == 1
    assert [count for name, (count, _) in results.items() if name in wild.CONDITIONS] == [4, 4, 4]
    chosen = mnist_test[1][np.random.default_rng(0).permutation(len(mnist_test[1]))[:4]]
    assert results["reference"] == (4, (chosen == 7).float().mean().item())  # the digits as they are
    lines = wild.table(results).splitlines()
    assert lines[0] == "| condition | images | accuracy |" and len(lines) == 2 + len(results)
