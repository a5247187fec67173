"""Drawings of handwriting for the tests: pages with a pen's digits and numbers on them, image files
made from them, and measures of the 28x28 digits read from them."""

import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy import ndimage

PAPER, INK = 225, 40  # grey levels of a pen's ink on paper, neither pure


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


def lighting(image: Image.Image, shadow: float) -> Image.Image:
    """The page under light falling off across it, with a shadow `shadow` of the width at its left edge."""
    pixels = np.asarray(image, dtype=np.float32)
    height, width = pixels.shape
    light = np.linspace(1.0, 0.6, width)[None, :] * np.linspace(1.0, 0.85, height)[:, None]
    light[:, : round(shadow * width)] *= 0.55
    return Image.fromarray(np.rint(pixels * light).astype(np.uint8))


def noisy(image: Image.Image, sigma: float) -> Image.Image:
    """The image with Gaussian noise of `sigma` grey levels."""
    noise = np.random.default_rng(0).normal(0, sigma, (image.height, image.width))
    return Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))


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
