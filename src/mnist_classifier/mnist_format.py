"""MNIST's own preprocessing for any image of a handwritten digit.

MNIST's digits were made from NIST's black-on-white scans: each digit was scaled to fit a 20x20
box keeping its aspect ratio (anti-aliased, hence grey levels), then placed in a 28x28 field with
its centre of mass at the centre. A user's photo or scan goes through the same steps, after the
steps that make it look like a clean scan:

1. `open_image` (image_files): the file decoded upright, refused in one line if it is no image;
2. `grayscale`: grey levels in [0, 1], transparency shown over white paper;
3. `light_on_dark`: the ink light on a dark background, as MNIST (dark ink on light paper inverted);
4. `flatten_lighting`: the ink's contrast against the paper's own level at each place, so that a
   lighting gradient or a shadow is not ink;
5. `separate_ink`: ink from paper by Otsu's threshold (scikit-image) with a minimum contrast, the
   grey levels stretched from the paper's noise to the ink's level;
6. `ink_blobs`, `digit_blobs`, `digit_ink`: the digit's connected pieces of ink, without specks,
   far-away marks or ink at the image's edge, cropped with their anti-aliased fringe;
7. `fit_box`: the digit's longer side scaled to 20 pixels;
8. `centre_by_mass`: the 28x28 digit, centred by its centre of mass.

`mnist_digit` runs them all for one digit and returns a uint8 [28, 28] tensor, a light digit on
black, like `torchvision.datasets.MNIST(...).data[i]`; written_numbers reads a row of digits with
the same steps. Bad input, a page without ink among it, raises `BadInput` with one line.
"""

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from skimage.filters import threshold_otsu

from mnist_classifier.errors import BadInput
from mnist_classifier.image_files import WORK_SIDE, ImageSource, open_image, source_name
from mnist_classifier.preprocessing import resize_bilinear

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
# A normal distribution's median absolute deviation over its standard deviation (scipy's
# special.ndtri(0.75), the scale of stats.median_abs_deviation's "normal").
NORMAL_MAD = 0.6744897501960817
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
# The digit's box holds its pixels of at least this level: MNIST's digits reach the edges of their
# box with more, while a lossy file's faint halo around strokes would widen it.
BOX_LEVEL = 0.1
BOX = 20  # MNIST's digits fit a 20x20 box ...
CANVAS = 28  # ... in a 28x28 field


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


def noise_sigma(values: np.ndarray) -> float:
    """A robust estimate of the values' standard deviation: their median absolute deviation, scaled
    for a normal distribution. scipy.stats.median_abs_deviation(values, axis=None, scale="normal")
    computes the same, but importing scipy.stats adds over half a second to predict.py."""
    return float(np.median(np.abs(values - np.median(values))) / NORMAL_MAD)


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


def separate_ink(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step 5: the ink's mask, and the grey levels stretched so the paper's noise is 0 and the ink's core 1.

    The mask is Otsu's threshold on the (noise-smoothed) contrast, at least MIN_CONTRAST and
    NOISE_SIGMAS times the noise's standard deviation, so that a blank page's noise is no ink. The
    noise floor is a robust estimate (median + 3 MADs) over the paper.
    """
    smooth = ndimage.gaussian_filter(flat, smoothing_sigma(flat.shape))
    noise = noise_sigma(smooth)  # the paper's, as it is most pixels
    threshold = max(threshold_otsu(np.clip(smooth, 0, 1)), MIN_CONTRAST, NOISE_SIGMAS * noise)
    mask = smooth > threshold
    if not mask.any():
        return mask, np.zeros_like(flat)
    paper = flat[~mask]
    paper_noise = np.median(paper) + 3 * noise_sigma(paper)
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
    return resize_bilinear(torch.from_numpy(digit), size).clamp(0, 1).numpy()


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
