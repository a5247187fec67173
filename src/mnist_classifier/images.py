"""MNIST's own preprocessing for any image of a handwritten digit, or of a row of digits (a number).

MNIST's digits were made from NIST's black-on-white scans: each digit was scaled to fit a 20x20
box keeping its aspect ratio (anti-aliased, hence grey levels), then placed in a 28x28 field with
its centre of mass at the centre. A user's photo or scan goes through the same steps, after the
steps that make it look like a clean scan:

1. `open_image`: decode PNG, JPEG, WebP, BMP or TIFF upright (EXIF orientation), refusing files
   over `MAX_PIXELS` from their header, before they are decoded;
2. `grayscale`: grey levels in [0, 1], transparency shown over white paper;
3. `light_on_dark`: the ink light on a dark background, as MNIST (dark ink on light paper inverted);
4. `flatten_lighting`: the ink's contrast against the paper's own level at each place, so that a
   lighting gradient or a shadow is not ink;
5. `separate_ink`: ink from paper by Otsu's threshold with a minimum contrast, the grey levels
   stretched from the paper's noise to the ink's level;
6. `ink_blobs`, `digit_blobs`, `digit_ink`: the digit's connected pieces of ink, without specks,
   far-away marks or ink at the image's edge, cropped with their anti-aliased fringe;
7. `fit_box`: the digit's longer side scaled to 20 pixels;
8. `centre_by_mass`: the 28x28 digit, centred by its centre of mass.

`mnist_digit` runs them all for one digit; `mnist_digits_of_number` reads a row of digits left to
right (`number_columns`, `split_touching`, and a classifier's judgement where given: `surest`).
Each returns uint8 [28, 28] tensors, light digits on black, like `torchvision.datasets.MNIST(...)
.data[i]`. Bad input, a page without ink among it, raises `BadInput` with one line.
"""

import io
import itertools
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from mnist_classifier.errors import BadInput

ImageSource = str | os.PathLike | bytes | Image.Image
Judge = Callable[[torch.Tensor], torch.Tensor]  # uint8 digits [N, 28, 28] -> probabilities [N, 10]

# An image is refused above this many pixels, from its header: a 40-megapixel photo decodes to
# 120 MB of RGB, while a few bytes of PNG can declare gigapixels (a decompression bomb).
MAX_PIXELS = 40_000_000
MAX_PIXELS_VARIABLE = "MNIST_MAX_PIXELS"
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
ALLOWED = "PNG, JPEG, WebP, BMP or TIFF"

# Larger images are worked on at this longer side: a digit keeps far more than the 20 pixels
# it ends with, and the filters below stay fast.
WORK_SIDE = 1024
# The background is the opening over a square of this fraction of the image's shorter side:
# wider than any stroke, so that only what is larger than strokes (lighting, shadows) is removed;
# and over a row or a column of LINE_FRACTION of the image's width or height: a shadow or the
# page's edge along a side of the image, however narrow.
BACKGROUND_FRACTION = 1 / 2
LINE_FRACTION = 0.8
# Noise is smoothed away from the ink mask over this fraction of the shorter side.
SMOOTHING_FRACTION = 1 / 512
# Ink is at least this much darker than its paper (1 = black on white), whatever Otsu says.
MIN_CONTRAST = 0.2
NOISE_SIGMAS = 5  # ... and this many times the noise's standard deviation (robustly estimated)
# The ink's level is this percentile of the ink pixels (a stroke's core, not its edges).
INK_PERCENTILE = 90
# Pieces of ink with less area than this fraction of the largest piece are specks.
SPECK_FRACTION = 0.05
# Pieces further than this fraction of the digit's size from it are another mark.
NEAR_FRACTION = 0.5
# A digit spans at least this fraction of the image's longer side (else it is a speck).
MIN_DIGIT_FRACTION = 0.02
# The digit's faint, anti-aliased edge within this fraction of its size is kept with it.
FRINGE_FRACTION = 0.06
# Pieces of a number overlapping horizontally by this fraction of the narrower are one digit when one
# is shorter than FRAGMENT_HEIGHT of the tallest piece (a 5's flag, a broken stroke; not a whole 1).
OVERLAP_FRACTION = 0.5
FRAGMENT_HEIGHT = 0.75
# In a number, ink shorter than this fraction of the tallest digit is not a digit.
MIN_HEIGHT_FRACTION = 1 / 3
# A piece of a number wider than this many times the row's height is touching digits, each
# about DIGIT_ASPECT times as wide as high.
SPLIT_ASPECT = 1.15
DIGIT_ASPECT = 0.9
# With a classifier to judge, ink wider than this many times the row's height may be two touching
# digits, cut at the least ink near one of CUT_FRACTIONS of its width.
PAIR_ASPECT = 0.9
CUT_FRACTIONS = (0.3, 0.4, 0.5, 0.6, 0.7)
# The digit's box holds its pixels of at least this level: MNIST's digits reach the edges of their
# box with more, while a lossy file's faint halo around strokes would widen it.
BOX_LEVEL = 0.1
BOX = 20  # MNIST's digits fit a 20x20 box ...
CANVAS = 28  # ... in a 28x28 field


class MissingImage(BadInput, FileNotFoundError):
    """An image file that does not exist: bad input, and a FileNotFoundError for callers that ask."""


@dataclass(frozen=True)
class Blob:
    """A connected piece of ink: its label in the label image, area in pixels and bounding box."""

    label: int
    area: int
    top: int
    bottom: int  # exclusive, as the box's slices
    left: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left


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
    """Step 1: a path, bytes or PIL image as a decoded, upright PIL image; bad input raises BadInput."""
    name = name or source_name(source)
    file = image_file(source, name)
    image = file if isinstance(file, Image.Image) else open_header(file, name)
    check_size(image, name)
    return decode(image, name)


def grayscale(image: Image.Image) -> np.ndarray:
    """Step 2: grey levels float32 [H, W] in [0, 1]; transparent parts count as white paper."""
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):  # 16-bit scans: keep their full range
        return np.clip(np.asarray(image, dtype=np.float32) / 65535, 0, 1)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        paper = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(paper, image.convert("RGBA"))
    return np.asarray(image.convert("L"), dtype=np.float32) / 255


def working_scale(gray: np.ndarray) -> np.ndarray:
    """The grey image with its longer side at most WORK_SIDE, averaged down (antialiased)."""
    height, width = gray.shape
    scale = WORK_SIDE / max(height, width)
    if scale >= 1:
        return gray
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(gray, mode="F").resize(size, Image.Resampling.BOX))


def light_on_dark(gray: np.ndarray) -> np.ndarray:
    """Step 3: the ink light on dark as MNIST's: inverted when the dominant (paper) level is the light end."""
    low, high = np.percentile(gray, [1, 99])
    paper = np.median(gray)
    return 1 - gray if paper > (low + high) / 2 else gray


def smoothing_sigma(shape: tuple[int, ...]) -> float:
    """The blur that removes pixel noise at this image size, none for small images."""
    return min(shape) * SMOOTHING_FRACTION


def background(ink: np.ndarray) -> np.ndarray:
    """The paper's level at each place (dark, after step 3): what is larger than any stroke.

    That is the largest of three morphological openings, each keeping what its shape fits in: a
    square wider than strokes (the lighting's gradients), and a row and a column nearly as long as
    the image (a shadow or the page's edge along a side of the image, however narrow).
    """
    height, width = ink.shape
    smooth = ndimage.gaussian_filter(ink, smoothing_sigma(ink.shape))
    square = max(3, round(min(height, width) * BACKGROUND_FRACTION))
    shapes = [(square, square), (round(height * LINE_FRACTION), 1), (1, round(width * LINE_FRACTION))]
    return np.max([ndimage.grey_opening(smooth, size=shape) for shape in shapes], axis=0)


def flatten_lighting(ink: np.ndarray) -> np.ndarray:
    """Step 4: each pixel's ink contrast against the background at its place (1 = black on white paper).

    The contrast is relative to the paper's brightness there, as light multiplies the paper's and
    the ink's reflectance alike. It may be slightly negative where there is no ink.
    """
    paper = background(ink)
    return (ink - paper) / np.maximum(1 - paper, 1 / 255)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold: the level splitting the values into two classes of least within-class variance."""
    counts, edges = np.histogram(values, bins=256, range=(0, 1))
    levels = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts)
    below_sum = np.cumsum(counts * levels)
    above = weight[-1] - weight
    with np.errstate(divide="ignore", invalid="ignore"):
        between = np.nan_to_num((below_sum * weight[-1] - below_sum[-1] * weight) ** 2 / (weight * above))
    if not between[:-1].any():  # one level only: no two classes, no ink
        return 1.0
    return float(edges[np.argmax(between[:-1]) + 1])


def separate_ink(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step 5: the ink's mask, and the grey levels stretched so the paper's noise is 0 and the ink's core 1.

    The mask is Otsu's threshold on the (noise-smoothed) contrast, at least MIN_CONTRAST and
    NOISE_SIGMAS times the noise's standard deviation, so that a blank page's noise is no ink. The
    noise floor is a robust estimate (median + 3 MADs) over the paper.
    """
    smooth = ndimage.gaussian_filter(flat, smoothing_sigma(flat.shape))
    noise = 1.4826 * np.median(np.abs(smooth - np.median(smooth)))  # the paper's, as it is most pixels
    threshold = max(otsu_threshold(np.clip(smooth, 0, 1)), MIN_CONTRAST, NOISE_SIGMAS * noise)
    mask = smooth > threshold
    if not mask.any():
        return mask, np.zeros_like(flat)
    paper = flat[~mask]
    paper_noise = np.median(paper) + 3 * 1.4826 * np.median(np.abs(paper - np.median(paper)))
    floor = min(paper_noise, threshold / 2)  # the ink stays visible on the noisiest paper
    level = np.percentile(flat[mask], INK_PERCENTILE)
    return mask, np.clip((flat - floor) / max(level - floor, 1 / 255), 0, 1).astype(np.float32)


def ink_blobs(mask: np.ndarray) -> tuple[np.ndarray, list[Blob]]:
    """Step 6a: the label image of the mask's 8-connected pieces of ink, and the pieces, largest first."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    blobs = [
        Blob(label, int(areas[label]), rows.start, rows.stop, columns.start, columns.stop)
        for label, (rows, columns) in enumerate(ndimage.find_objects(labels), start=1)
    ]
    return labels, sorted(blobs, key=lambda blob: -blob.area)


def without_specks(blobs: list[Blob], shape: tuple[int, ...]) -> list[Blob]:
    """The blobs that are not specks: not tiny beside the largest one, nor beside the image."""
    if not blobs:
        return []
    min_area = SPECK_FRACTION * blobs[0].area
    min_side = MIN_DIGIT_FRACTION * max(shape)
    return [blob for blob in blobs if blob.area >= min_area and max(blob.height, blob.width) >= min_side]


def bounds(blobs: list[Blob]) -> tuple[int, int, int, int]:
    """The bounding box (top, bottom, left, right) of blobs together."""
    return (
        min(blob.top for blob in blobs),
        max(blob.bottom for blob in blobs),
        min(blob.left for blob in blobs),
        max(blob.right for blob in blobs),
    )


def gap(blob: Blob, box: tuple[int, int, int, int]) -> int:
    """The distance in pixels between a blob's box and a box (0 where they overlap), along the larger axis."""
    top, bottom, left, right = box
    return max(top - blob.bottom, blob.top - bottom, left - blob.right, blob.left - right, 0)


def touches_edge(blob: Blob, shape: tuple[int, ...]) -> bool:
    """Whether a blob reaches the image's edge."""
    height, width = shape[:2]
    return blob.top == 0 or blob.left == 0 or blob.bottom == height or blob.right == width


def digit_blobs(blobs: list[Blob], shape: tuple[int, ...]) -> list[Blob]:
    """Step 6b: the pieces of one digit: the largest piece, and every other non-speck near the digit.

    Ink touching the image's edge (the rest of a shadow, the page's edge) is a piece of the digit only
    when no ink is clear of the edge, as in a digit cropped tight.
    """
    candidates = without_specks(blobs, shape)
    candidates = [blob for blob in candidates if not touches_edge(blob, shape)] or candidates
    if not candidates:
        return []
    digit, others = candidates[:1], candidates[1:]
    while near := [blob for blob in others if gap(blob, bounds(digit)) <= NEAR_FRACTION * size_of(digit)]:
        digit += near
        others = [blob for blob in others if blob not in near]
    return digit


def size_of(blobs: list[Blob]) -> int:
    """The longer side of the blobs' bounding box."""
    top, bottom, left, right = bounds(blobs)
    return max(bottom - top, right - left)


def digit_ink(soft: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Step 6c: the digit's grey levels cropped to its ink, with its faint edge and without other marks."""
    rows, columns = np.nonzero(kept)
    fringe = max(2, round(FRINGE_FRACTION * max(np.ptp(rows), np.ptp(columns))))
    top, left = max(rows.min() - fringe, 0), max(columns.min() - fringe, 0)
    window = (slice(top, rows.max() + fringe + 1), slice(left, columns.max() + fringe + 1))
    ink, near = soft[window], ndimage.distance_transform_edt(~kept[window]) <= fringe
    # the faint edge is what joins the ink within the fringe's reach: not the grains of noise around it
    pieces, _ = ndimage.label(
        (near & (ink >= 0.5 / 255)) | kept[window], structure=np.ones((3, 3), dtype=bool)
    )
    ink = np.where(np.isin(pieces, np.unique(pieces[kept[window]])), ink, 0)
    rows, columns = np.nonzero((ink >= 0.5 / 255) | kept[window])  # the ink and its fringe left by rounding
    return ink[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]


def fit_box(digit: np.ndarray, box: int = BOX) -> np.ndarray:
    """Step 7: the digit scaled to a longer side of `box` pixels, keeping its aspect ratio and grey levels.

    Its side is that of its pixels of at least BOX_LEVEL, so that a faint halo does not shrink it (as
    long as the halo fits in MNIST's field).
    """
    height, width = digit.shape
    rows, columns = np.nonzero(digit >= min(BOX_LEVEL, digit.max()))
    scale = min(box / (max(np.ptp(rows), np.ptp(columns)) + 1), CANVAS / max(height, width))
    size = [max(1, round(height * scale)), max(1, round(width * scale))]
    return TF.resize(torch.from_numpy(digit)[None], size, antialias=True)[0].clamp(0, 1).numpy()


def centre_by_mass(digit: np.ndarray, canvas: int = CANVAS) -> np.ndarray:
    """Step 8: the digit in a canvas x canvas field with its centre of mass at the centre (pixel 14 of 28).

    Moved by whole pixels, so its grey levels stay as they are; a digit whose centre of mass lies
    near an edge of its box stays whole inside the field rather than centred.
    """
    field = np.zeros((canvas, canvas), dtype=digit.dtype)
    centre = ndimage.center_of_mass(digit)
    top, left = (
        min(max(round(canvas / 2 - mass), 0), canvas - side)
        for mass, side in zip(centre, digit.shape, strict=True)
    )
    field[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return field


def as_mnist(digit: np.ndarray) -> torch.Tensor:
    """A digit's ink cropped out of the page as MNIST's uint8 [28, 28], light on black."""
    return torch.from_numpy(np.rint(centre_by_mass(fit_box(digit)) * 255).astype(np.uint8))


def page_ink(source: ImageSource, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1 to 5: the image's ink mask and grey levels, at the working scale."""
    gray = working_scale(grayscale(open_image(source, name)))
    return separate_ink(flatten_lighting(light_on_dark(gray)))


def no_digit(name: str) -> BadInput:
    """The error for an image without a digit: a label is never guessed."""
    return BadInput(f"{name} is invalid: no digit found (the page has no ink); give an image of a digit")


def mnist_digit(image: ImageSource, name: str | None = None) -> torch.Tensor:
    """The one handwritten digit of an image as MNIST's uint8 [28, 28], light on black; BadInput if none.

    `image` is a path, the bytes of an image file or a PIL image; `name` names it in errors.
    """
    name = name or source_name(image)
    mask, soft = page_ink(image, name)
    labels, blobs = ink_blobs(mask)
    digit = digit_blobs(blobs, mask.shape)
    if not digit:
        raise no_digit(name)
    return as_mnist(digit_ink(soft, np.isin(labels, [blob.label for blob in digit])))


def overlap(a: tuple[int, int], b: tuple[int, int]) -> float:
    """How much two column ranges overlap, as a fraction of the narrower."""
    shared = min(a[1], b[1]) - max(a[0], b[0])
    return shared / max(1, min(a[1] - a[0], b[1] - b[0]))


def number_columns(blobs: list[Blob]) -> list[list[Blob]]:
    """The pieces of a number grouped into digits, left to right: pieces overlapping horizontally are
    one digit (a 5's flag, a broken stroke); marks off the row or too short for a digit are dropped."""
    if not blobs:
        return []
    fragment = FRAGMENT_HEIGHT * max(blob.height for blob in blobs)
    groups: list[list[Blob]] = []
    for blob in sorted(blobs, key=lambda blob: blob.left):
        joined = [
            group
            for group in groups
            if overlap((blob.left, blob.right), columns_of(group)) > OVERLAP_FRACTION
            and min(blob.height, height_of(group)) < fragment
        ]
        groups = [group for group in groups if group not in joined] + [
            [blob, *itertools.chain.from_iterable(joined)]
        ]
    groups.sort(key=lambda group: columns_of(group)[0])
    top, bottom = bounds(max(groups, key=height_of))[:2]
    return [
        group
        for group in groups
        if height_of(group) >= MIN_HEIGHT_FRACTION * (bottom - top)
        and bounds(group)[0] < bottom
        and bounds(group)[1] > top
    ]


def height_of(blobs: list[Blob]) -> int:
    """The height of blobs together."""
    top, bottom = bounds(blobs)[:2]
    return bottom - top


def columns_of(blobs: list[Blob]) -> tuple[int, int]:
    """The column range (left, right) of blobs together."""
    return bounds(blobs)[2], bounds(blobs)[3]


def ink_profile(ink: np.ndarray, count: int) -> np.ndarray:
    """The ink in each column (the vertical projection), smoothed over a fraction of a digit's width."""
    return ndimage.uniform_filter1d(
        ink.sum(axis=0, dtype=np.float32), size=max(1, ink.shape[1] // (8 * count))
    )


def least_ink_near(profile: np.ndarray, centre: int, reach: int) -> int:
    """The column with the least ink within `reach` of `centre`, never the first: ink stays on both sides."""
    start = min(max(centre - reach, 1), len(profile) - 1)
    return start + int(np.argmin(profile[start : max(centre + reach, start) + 1]))


def split_touching(ink: np.ndarray, row_height: int) -> list[tuple[int, int]]:
    """Column ranges of the digits in one digit's ink, several where it is too wide for one: touching
    digits are cut at the columns with least ink near even spacing."""
    width = ink.shape[1]
    if width <= SPLIT_ASPECT * row_height:
        return [(0, width)]
    count = max(2, round(width / (DIGIT_ASPECT * row_height)))
    profile = ink_profile(ink, count)
    cuts = [
        least_ink_near(profile, index * width // count, width // (4 * count)) for index in range(1, count)
    ]
    return list(itertools.pairwise([0, *cuts, width]))


def cuts_in_two(ink: np.ndarray) -> list[list[tuple[int, int]]]:
    """The ways to cut one digit's ink into two digits: at the least ink near each of CUT_FRACTIONS of
    its width."""
    width = ink.shape[1]
    profile = ink_profile(ink, 2)
    cuts = {least_ink_near(profile, round(fraction * width), width // 20) for fraction in CUT_FRACTIONS}
    return [[(0, cut), (cut, width)] for cut in sorted(cuts)]


def ways_to_cut(ink: np.ndarray, row_height: int, judged: bool) -> list[list[tuple[int, int]]]:
    """The candidate column ranges of the digits in one digit's ink: as `split_touching` cuts it, and, for
    a classifier to judge, in two wherever a pair of touching digits could be (wider than PAIR_ASPECT)."""
    ways = [split_touching(ink, row_height)]
    if judged and ink.shape[1] >= max(2, PAIR_ASPECT * row_height):
        ways += cuts_in_two(ink)
    return ways


def surest(options: list[list[torch.Tensor]], judge: Judge) -> list[torch.Tensor]:
    """The option whose digits the classifier is surest of: the highest product of their top probabilities."""
    if len(options) == 1:
        return options[0]
    scores = [judge(torch.stack(digits)).max(dim=1).values.prod().item() for digits in options]
    return options[int(np.argmax(scores))]


def columns_digit(soft: np.ndarray, kept: np.ndarray, start: int | None, stop: int | None) -> torch.Tensor:
    """The digit of the kept ink within columns start:stop (None: up to the edge, with the fringe)."""
    columns = np.zeros(kept.shape[1], dtype=bool)
    columns[start:stop] = True
    return as_mnist(digit_ink(soft * columns, kept & columns))


def group_options(
    soft: np.ndarray, kept: np.ndarray, box: tuple[int, int, int, int], row_height: int, judged: bool
) -> list[list[torch.Tensor]]:
    """The digits of one group of ink (within `box`), for each way to cut it; a cut digit keeps its own
    columns only, while the group's outer edges keep their fringe."""
    top, bottom, left, right = box
    ink = kept[top:bottom, left:right]
    return [
        [
            columns_digit(
                soft, kept, left + start if start else None, left + stop if stop < right - left else None
            )
            for start, stop in way
            if ink[:, start:stop].any()
        ]
        for way in ways_to_cut(ink, row_height, judged)
    ]


def mnist_digits_of_number(
    image: ImageSource, name: str | None = None, judge: Judge | None = None
) -> list[torch.Tensor]:
    """The digits of a handwritten number written in a row, left to right, each as `mnist_digit` gives
    it; BadInput if the image has none.

    `judge` (uint8 digits [N, 28, 28] -> probabilities [N, 10]), when given, picks how to cut ink that
    may be touching digits: whole, or in two where its digits are read the most surely.
    """
    name = name or source_name(image)
    mask, soft = page_ink(image, name)
    labels, blobs = ink_blobs(mask)
    groups = number_columns(without_specks(blobs, mask.shape))
    if not groups:
        raise no_digit(name)
    row_height = max(height_of(group) for group in groups)
    digits = []
    for group in groups:
        kept = np.isin(labels, [blob.label for blob in group])
        options = group_options(soft, kept, bounds(group), row_height, judge is not None)
        digits += options[0] if judge is None else surest(options, judge)
    return digits
