"""A handwritten number, a row of digits, read as MNIST digits left to right: the pieces of ink of the
page (mnist_format) grouped into digits by the columns they span (a 5's flag, a broken stroke),
marks off the row dropped, and ink too wide for one digit cut where there is least ink between its
digits, or, with a classifier to judge, where the classifier is surest of the digits it sees.
"""

import itertools
from collections.abc import Callable

import numpy as np
import torch
from scipy import ndimage

from mnist_classifier.image_files import ImageSource, source_name
from mnist_classifier.mnist_format import (
    Blob,
    as_mnist,
    bounds,
    digit_ink,
    ink_blobs,
    no_digit,
    page_ink,
    without_specks,
)

Judge = Callable[[torch.Tensor], torch.Tensor]  # uint8 digits [N, 28, 28] -> probabilities [N, 10]

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
