"""A row of digits read left to right: broken digits kept whole, touching ones cut, a classifier's
judgement of where to cut."""

import pytest
import torch
from PIL import ImageDraw

from mnist_classifier.errors import BadInput
from mnist_classifier.mnist_format import mnist_digit
from mnist_classifier.written_numbers import mnist_digits_of_number, surest

from .drawings import INK, block, broken_seven, nearest, page, ring, row, stem


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

    assert surest([one, two], judge) is two
    assert surest([two, one], lambda digits: judge(1 - digits)) is one


def test_a_page_without_ink_has_no_number() -> None:
    with pytest.raises(BadInput, match="no digit found"):
        mnist_digits_of_number(page(lambda draw: None), name="blank.png")
