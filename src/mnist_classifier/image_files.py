"""A user's image file opened safely: PNG, JPEG, WebP, BMP or TIFF, decoded upright (EXIF
orientation), and refused with one line when it is missing, empty, not an image, truncated, or
declares more than `MAX_PIXELS` in its header (checked before it is decoded: a few bytes of PNG can
declare gigapixels, a decompression bomb).
"""

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_classifier.errors import BadInput

ImageSource = str | os.PathLike | bytes | Image.Image

# An image is refused above this many pixels, from its header: a 40-megapixel photo decodes to
# 120 MB of RGB, while a few bytes of PNG can declare gigapixels (a decompression bomb).
MAX_PIXELS = 40_000_000
MAX_PIXELS_VARIABLE = "MNIST_MAX_PIXELS"
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
ALLOWED = "PNG, JPEG, WebP, BMP or TIFF"
# Larger images are worked on at this longer side (mnist_format): a JPEG is decoded at a reduced
# scale when that is enough.
WORK_SIDE = 1024


class MissingImage(BadInput, FileNotFoundError):
    """An image file that does not exist: bad input, and a FileNotFoundError for callers that ask."""


def max_pixels() -> int:
    """The pixel limit: MNIST_MAX_PIXELS from the environment, else MAX_PIXELS."""
    value = os.environ.get(MAX_PIXELS_VARIABLE, str(MAX_PIXELS))
    if not value.isdigit() or int(value) < 1:
        raise BadInput(f"{MAX_PIXELS_VARIABLE}={value} is invalid: give a whole number of pixels >= 1")
    return int(value)


def source_name(source: ImageSource) -> str:
    """How error messages name an image: its path, else what it is."""
    if isinstance(source, bytes):
        return "the image's bytes"
    if isinstance(source, Image.Image):
        return getattr(source, "filename", "") or "the image"
    return str(source)


def image_file(source: ImageSource, name: str) -> BinaryIO | Image.Image:
    """The image's bytes as a file to decode (or the PIL image given), refusing a missing or empty file."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        if not path.exists():
            raise MissingImage(f"{name} is invalid: there is no such file (give a {ALLOWED} image)")
        if not path.is_file():
            raise BadInput(f"{name} is invalid: it is not a file (give a {ALLOWED} image)")
        try:
            data = path.read_bytes()
        except OSError as error:
            raise BadInput(f"{name} is invalid: it cannot be read ({error.strerror})") from error
    if not data:
        raise BadInput(f"{name} is invalid: it is empty (give a {ALLOWED} image)")
    return io.BytesIO(data)


def open_header(file: BinaryIO, name: str) -> Image.Image:
    """The image with only its header read (PIL decodes lazily), refusing what is not an allowed image."""
    limit = max_pixels()
    Image.init()  # registers every format PIL has, WebP and TIFF among them
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies below
            return Image.open(file, formats=FORMATS)
    except Image.DecompressionBombError as error:
        raise BadInput(
            f"{name} is invalid: its header declares more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels, "
            f"over the limit of {limit:,} ({MAX_PIXELS_VARIABLE} sets another, up to that number)"
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise BadInput(f"{name} is invalid: it is not an image ({ALLOWED})") from error


def check_size(image: Image.Image, name: str) -> None:
    """Refuse an image whose header declares more pixels than the limit, before it is decoded."""
    limit = max_pixels()
    width, height = image.size
    if width * height > limit:
        raise BadInput(
            f"{name} is invalid: {width}x{height} pixels is over the limit of {limit:,} "
            f"({MAX_PIXELS_VARIABLE} sets another)"
        )
    if width * height == 0:
        raise BadInput(f"{name} is invalid: it has no pixels (give a {ALLOWED} image)")


def decode(image: Image.Image, name: str) -> Image.Image:
    """The decoded image turned upright by its EXIF orientation, large JPEGs decoded at a reduced scale."""
    image.draft(None, (WORK_SIDE, WORK_SIDE))  # JPEG only: decodes at 1/2 to 1/8 scale when that is enough
    try:
        image.load()
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise BadInput(
            f"{name} is invalid: it is truncated or corrupt ({' '.join(str(error).split())}); "
            f"give a whole {ALLOWED} image"
        ) from error


def open_image(source: ImageSource, name: str | None = None) -> Image.Image:
    """A path, bytes or PIL image as a decoded, upright PIL image; bad input raises BadInput."""
    name = name or source_name(source)
    file = image_file(source, name)
    image = file if isinstance(file, Image.Image) else open_header(file, name)
    check_size(image, name)
    return decode(image, name)
