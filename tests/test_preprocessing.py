"""The net's input from MNIST-sized images: equal, value for value, to what torchvision's resize and
pad make, the reference ops of training."""

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from mnist_classifier.preprocessing import resize_bilinear, to_inputs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("shape", "size"),
    [
        ((5, 1, 28, 28), (32, 32)),  # a batch, as training resizes it
        ((5, 1, 28, 28), (20, 20)),
        ((1, 28, 28), (28, 28)),  # the same size
        ((150, 97), (20, 13)),  # a digit's box, as mnist_format fits it to MNIST's 20 pixels
        ((9, 40), (2, 20)),
        ((3, 7), (28, 11)),
    ],
)
def test_resize_is_torchvisions_antialiased_bilinear_resize(
    shape: tuple[int, ...], size: tuple[int, int], dtype: torch.dtype
) -> None:
    images = torch.rand(shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    expected = TF.resize(images if images.dim() > 2 else images[None], list(size), antialias=True)
    assert torch.equal(resize_bilinear(images, size), expected.reshape(*shape[:-2], *size))


@pytest.mark.parametrize(
    ("resize", "image_size"), [("bilinear", 32), ("bilinear", 64), ("pad", 32), ("pad", 33)]
)
def test_inputs_are_torchvisions_resize_or_pad_of_the_images_in_0_1(resize: str, image_size: int) -> None:
    images = torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = images.unsqueeze(1).float() / 255
    size = [image_size, image_size]
    before, after = (image_size - 28) // 2, (image_size - 28 + 1) // 2  # the odd pixel right and bottom
    expected = (
        TF.resize(x, size, TF.InterpolationMode.BILINEAR, antialias=True)
        if resize == "bilinear"
        else TF.pad(x, [before, before, after, after])
    )
    assert torch.equal(to_inputs(images, image_size, resize), expected)
