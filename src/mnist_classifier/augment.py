"""Random distortions of a whole training batch, where the batch already lives (CPU or GPU).

One affine map per image (rotation, scale, shear, translation, and for datasets where it keeps
the class, a horizontal flip), optionally followed by an elastic distortion, all drawn at once
as tensors and applied with one `grid_sample`: no per-sample Python and no DataLoader workers.
Images may be normalised: the background (the batch's lowest value) stays the background.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class RandomAffine(nn.Module):
    """Distorts each image of a batch [N, C, H, W] by its own random affine map, and optionally a
    smooth random (elastic) displacement of its pixels.

    Args:
        rotation: the largest rotation, in degrees either way.
        scale: the largest change of size, as a fraction (0.1: 90% to 110%).
        translate: the largest shift, as a fraction of the image side, in each direction.
        shear: the largest horizontal shear, in degrees either way.
        hflip: the probability of a mirror image (0 for digits, whose mirror image is no digit).
        elastic: the largest elastic displacement of a pixel, in pixels (0: none). The field is
            random offsets at `elastic_cells` x `elastic_cells` control points, smoothly
            interpolated (bilinear) over the image, so nearby pixels move together.
        elastic_cells: control points of the elastic field per side.
        p: the probability that an image is distorted at all.
        seed: with the training step, what the distortions of a batch are drawn from: the same seed
            gives the same distortions at the same step, in a resumed run too.
    """

    def __init__(
        self,
        rotation: float = 0.0,
        scale: float = 0.0,
        translate: float = 0.0,
        shear: float = 0.0,
        hflip: float = 0.0,
        elastic: float = 0.0,
        elastic_cells: int = 4,
        p: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.rotation = rotation
        self.scale = scale
        self.translate = translate
        self.shear = shear
        self.hflip = hflip
        self.elastic = elastic
        self.elastic_cells = int(elastic_cells)
        self.p = p
        self.seed = seed

    def forward(self, images: torch.Tensor, step: int) -> torch.Tensor:
        """The images of training step `step`, distorted."""
        generator = torch.Generator(images.device).manual_seed((self.seed * 1_000_003 + step) % 2**63)
        grid = self.sampling_grid(images, generator)
        background = images.amin()
        distorted = F.grid_sample(images - background, grid, mode="bilinear", align_corners=False)
        return distorted.add_(background)

    def sampling_grid(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """[N, H, W, 2]: where each output pixel samples its image, in grid_sample's [-1, 1] units."""
        count, _, height, width = images.shape
        device, dtype = images.device, images.dtype
        draws = torch.rand(7, count, 1, 1, device=device, dtype=dtype, generator=generator)
        angle = (draws[0] * 2 - 1) * math.radians(self.rotation)
        shear = (draws[1] * 2 - 1) * math.radians(self.shear)
        scale = 1 + (draws[2] * 2 - 1) * self.scale
        shift_x, shift_y = (draws[3:5] * 2 - 1) * 2 * self.translate
        mirror = torch.where(draws[5] < self.hflip, -1.0, 1.0)
        # The map goes from output to input: rotation times horizontal shear, over the scale.
        cos, sin, tan = angle.cos(), angle.sin(), shear.tan()
        a, b = mirror * cos / scale, (cos * tan - sin) / scale
        c, d = mirror * sin / scale, (sin * tan + cos) / scale
        if self.p < 1:  # the images left alone get the identity map
            keep = draws[6] >= self.p
            a, d = torch.where(keep, 1.0, a), torch.where(keep, 1.0, d)
            b, c = torch.where(keep, 0.0, b), torch.where(keep, 0.0, c)
            shift_x, shift_y = torch.where(keep, 0.0, shift_x), torch.where(keep, 0.0, shift_y)
        # Pixel centres in [-1, 1] (align_corners=False), as rows and columns that broadcast.
        x = (torch.arange(width, device=device, dtype=dtype) * 2 + 1) / width - 1
        y = ((torch.arange(height, device=device, dtype=dtype) * 2 + 1) / height - 1).view(height, 1)
        grid = torch.stack([a * x + b * y + shift_x, c * x + d * y + shift_y], dim=-1)
        if self.elastic > 0:
            cells = self.elastic_cells
            offsets = torch.rand(count, 2, cells, cells, device=device, dtype=dtype, generator=generator)
            field = F.interpolate(offsets * 2 - 1, size=(height, width), mode="bilinear", align_corners=True)
            pixels = torch.tensor([2 / width, 2 / height], device=device, dtype=dtype)
            grid = grid + field.permute(0, 2, 3, 1) * self.elastic * pixels
        return grid
