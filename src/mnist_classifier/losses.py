"""Losses that torch.nn lacks in the form the classifier needs: all of them take raw logits."""

import torch
import torch.nn.functional as F
from torch import nn


class OneHotMSELoss(nn.Module):
    """Mean squared error between the logits and one-hot targets (the tutorial's MSELoss example)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(target, self.num_classes).to(logits.dtype)
        return F.mse_loss(logits, one_hot)


class LogSoftmaxNLLLoss(nn.Module):
    """NLLLoss as the tutorial-style nets use it, whose last layer is a log_softmax.

    Our nets output logits, so the log_softmax moves here; the value equals cross entropy.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.nll_loss(F.log_softmax(logits, dim=1), target)
