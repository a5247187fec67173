import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnist_classifier.models import MLP, LeNet


def test_lenet_has_the_tutorial_parameters() -> None:
    shapes = [tuple(p.shape) for p in LeNet().parameters()]
    assert shapes == [
        (6, 1, 5, 5), (6,), (16, 6, 5, 5), (16,), (120, 400), (120,), (84, 120), (84,), (10, 84), (10,)
    ]  # fmt: skip
    assert sum(p.numel() for p in LeNet().parameters()) == 61_706


def tutorial_forward(weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The tutorial's LeNet forward, written out with torch.nn.functional on the given weights."""
    x = F.max_pool2d(F.relu(F.conv2d(x, weights["conv1.weight"], weights["conv1.bias"])), (2, 2))
    x = F.max_pool2d(F.relu(F.conv2d(x, weights["conv2.weight"], weights["conv2.bias"])), 2)
    x = x.reshape(len(x), -1)
    x = F.relu(F.linear(x, weights["fc1.weight"], weights["fc1.bias"]))
    x = F.relu(F.linear(x, weights["fc2.weight"], weights["fc2.bias"]))
    return F.linear(x, weights["fc3.weight"], weights["fc3.bias"])


@pytest.mark.parametrize(("image_size", "hidden_sizes"), [(32, (120, 84)), (28, (60, 42))])
def test_lenet_computes_the_tutorials_forward(image_size: int, hidden_sizes: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = LeNet(image_size=image_size, hidden_sizes=hidden_sizes)
    images = torch.randn(4, 1, image_size, image_size)
    with torch.no_grad():
        expected = tutorial_forward(dict(net.named_parameters()), images)
        torch.testing.assert_close(net(images), expected, rtol=0, atol=0)


def test_lenet_maps_32x32_images_to_ten_logits() -> None:
    assert LeNet()(torch.zeros(3, 1, 32, 32)).shape == (3, 10)


def test_lenet_derives_its_first_fc_layer_from_the_image_size() -> None:
    net = LeNet(image_size=28)
    assert net.fc1.in_features == 16 * 4 * 4
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_lenet_refuses_images_too_small_for_its_convolutions() -> None:
    LeNet(image_size=16)(torch.zeros(1, 1, 16, 16))  # the smallest size that works
    with pytest.raises(ValueError, match=r"image_size=15 is invalid for LeNet: it needs at least 16"):
        LeNet(image_size=15)


def test_mlp_defaults_to_200_and_50_hidden_units_on_1024_inputs() -> None:
    linears = [m for m in MLP().modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1024, 200), (200, 50), (50, 10)]
    assert sum(isinstance(m, nn.ReLU) for m in MLP().modules()) == 2


def test_mlp_input_size_and_widths_follow_its_arguments() -> None:
    net = MLP(image_size=28, hidden_sizes=[64])
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 64), (64, 10)]
    assert net(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_lenet_hidden_sizes_set_the_widths_of_its_fully_connected_layers() -> None:
    net = LeNet(hidden_sizes=[60, 42])
    assert (net.fc1.out_features, net.fc2.out_features, net.fc3.in_features) == (60, 42, 42)
    assert net(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("hidden_sizes", [[120], [120, 84, 10]])
def test_lenet_refuses_other_than_two_widths(hidden_sizes: list[int]) -> None:
    with pytest.raises(ValueError, match=r"hidden_sizes=.* is invalid for LeNet: give exactly 2 sizes"):
        LeNet(hidden_sizes=hidden_sizes)
