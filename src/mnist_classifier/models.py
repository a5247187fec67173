"""The two networks of the PyTorch "Neural Networks" tutorial, as plain torch modules."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mnist_classifier.errors import BadInput
from mnist_classifier.schema import LENET_MIN_IMAGE_SIZE


class LeNet(nn.Module):
    """LeNet-5: conv 1->6 5x5, max-pool, conv 6->16 5x5, max-pool, fc 400->120->84->10, ReLU.

    `hidden_sizes` are the widths of the two hidden fully connected layers (the tutorial's 120 and
    84), so that a search can vary the model's width.
    """

    def __init__(
        self, image_size: int = 32, hidden_sizes: Sequence[int] = (120, 84), num_classes: int = 10
    ) -> None:
        super().__init__()
        if image_size < LENET_MIN_IMAGE_SIZE:
            raise BadInput(
                f"image_size={image_size} is invalid for LeNet: it needs at least {LENET_MIN_IMAGE_SIZE} "
                "(32 is the tutorial's size)"
            )
        if len(hidden_sizes) != 2:
            raise BadInput(f"hidden_sizes={list(hidden_sizes)} is invalid for LeNet: give exactly 2 sizes")
        feature_map_size = ((image_size - 4) // 2 - 4) // 2
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * feature_map_size**2, hidden_sizes[0])
        self.fc2 = nn.Linear(hidden_sizes[0], hidden_sizes[1])
        self.fc3 = nn.Linear(hidden_sizes[1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class MLP(nn.Module):
    """A fully connected net on the flattened image: hidden layers with ReLU, then the logits."""

    def __init__(
        self, image_size: int = 32, hidden_sizes: Sequence[int] = (200, 50), num_classes: int = 10
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        in_features = image_size * image_size
        for width in hidden_sizes:
            layers += [nn.Linear(in_features, width), nn.ReLU()]
            in_features = width
        layers.append(nn.Linear(in_features, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
