import torch
import torch.nn.functional as F

from mnist_classifier.losses import LogSoftmaxNLLLoss, OneHotMSELoss

LOGITS = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]])
TARGETS = torch.tensor([0, 2])


def test_one_hot_mse_compares_logits_with_one_hot_targets() -> None:
    one_hot = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    expected = ((LOGITS - one_hot) ** 2).mean()
    assert torch.allclose(OneHotMSELoss(num_classes=3)(LOGITS, TARGETS), expected)


def test_nll_on_logits_applies_log_softmax_first() -> None:
    expected = -(LOGITS.log_softmax(dim=1)[[0, 1], TARGETS]).mean()
    loss = LogSoftmaxNLLLoss()(LOGITS, TARGETS)
    assert torch.allclose(loss, expected)
    assert torch.allclose(loss, F.cross_entropy(LOGITS, TARGETS))
