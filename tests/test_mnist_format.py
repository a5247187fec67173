"""MNIST's preprocessing of one digit: each step on synthetic pages of known polarity, place and size,
lighting and noise; MNIST's own digits left as they are."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from scipy.stats import median_abs_deviation

from mnist_classifier.errors import BadInput
from mnist_classifier.mnist_format import light_on_dark, mnist_digit, noise_sigma

from .drawings import (
    INK,
    aligned_difference,
    box_of,
    centre_of_mass,
    ell,
    encoded,
    lighting,
    noisy,
    page,
    ring,
)


def test_dark_ink_on_light_paper_is_inverted_and_light_on_dark_kept() -> None:
    dark_on_light = page(ring())
    digit = mnist_digit(dark_on_light)
    assert digit.dtype == torch.uint8 and digit.shape == (28, 28)
    assert digit[0].max() == 0 and digit[:, 0].max() == 0 and digit.max() > 200  # light digit on black
    assert torch.equal(mnist_digit(Image.eval(dark_on_light, lambda level: 255 - level)), digit)


def test_light_on_dark_inverts_by_the_dominant_level() -> None:
    paper = np.full((50, 50), 0.9, dtype=np.float32)
    paper[20:30, 10:40] = 0.1
    assert light_on_dark(paper)[0, 0] == pytest.approx(0.1)
    assert light_on_dark(1 - paper)[0, 0] == pytest.approx(0.1)


@pytest.mark.parametrize("shape", [(40, 31), (1001,), (1000,)])
def test_the_noise_is_scipys_median_absolute_deviation_scaled_for_a_normal_distribution(
    shape: tuple[int, ...],
) -> None:
    values = np.random.default_rng(0).normal(0.1, 0.02, shape).astype(np.float32)
    assert noise_sigma(values) == median_abs_deviation(values, axis=None, scale="normal")


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


@pytest.mark.parametrize("sigma", [4, 30])
def test_a_blank_page_noisy_and_in_uneven_light_has_no_digit(sigma: float) -> None:
    with pytest.raises(BadInput, match=r"^the image is invalid: no digit found \(the page has no ink\)"):
        mnist_digit(lighting(noisy(page(lambda draw: None), sigma), 0.1))


def test_noise_is_not_ink() -> None:
    clean = mnist_digit(page(ring()))
    assert aligned_difference(mnist_digit(noisy(page(ring()), 15)), clean) < 15
    assert aligned_difference(mnist_digit(page(ring(size=70))), clean) > 15  # what the tolerance tells apart


def test_mnist_digits_as_png_are_left_as_they_are(mnist_test: tuple[torch.Tensor, ...]) -> None:
    digits = mnist_test[0][:50]
    read = torch.stack([mnist_digit(encoded(Image.fromarray(digit.numpy()))) for digit in digits])
    differences = (read.int() - digits.int()).abs().amax(dim=(1, 2))
    assert (differences <= 3).float().mean() >= 0.9  # the same digit up to rounding
