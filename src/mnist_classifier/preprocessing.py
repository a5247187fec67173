"""MNIST-sized images as the net takes them, the same in training (data) and inference: resized or
padded to the net's image size, grey levels in [0, 1].

Imports no torchvision: importing it imports its models and, through its ops, torch's compiler, a
large share of an inference command's start-up (docs/benchmarks.md, "Start-up").
`resize_bilinear` makes the call of torch's interpolate that torchvision's antialiased bilinear
resize makes for float images (test_preprocessing checks that their outputs are equal).
"""

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from mnist_classifier.datasets import IMAGE_SIZE


def resize_bilinear(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Float images [..., H, W] resized to `size` (height, width): bilinear, antialiased, as
    torchvision.transforms.v2.functional.resize(images, size, antialias=True)."""
    height, width = size
    batch = images.reshape(-1, 1, *images.shape[-2:])
    resized = F.interpolate(batch, size=[height, width], mode="bilinear", align_corners=False, antialias=True)
    return resized.reshape(*images.shape[:-2], height, width)


def to_inputs(images: torch.Tensor, image_size: int, resize: str) -> torch.Tensor:
    """uint8 images [N, 28, 28] -> float images [N, 1, image_size, image_size] in [0, 1]."""
    x = images.unsqueeze(1).float().div_(255)
    if resize == "bilinear":
        return resize_bilinear(x, [image_size, image_size])
    # LeNet-5 paper style: zero borders around the 28x28 image, the odd pixel right and bottom.
    before = (image_size - IMAGE_SIZE) // 2
    after = image_size - IMAGE_SIZE - before
    return F.pad(x, [before, after, before, after])  # left, right, top, bottom
