"""Fixed targets: 1-hot and uniform label smoothing, both trained with cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdtool.errors import KdtoolError
from kdtool.losses.base import Target


def check_unit_interval(name: str, value: float) -> float:
    """Return ``value`` if it lies strictly between 0 and 1, else raise a KdtoolError naming it."""
    if not 0.0 < value < 1.0:
        raise KdtoolError(f"{name} must be in (0, 1), got {value}")
    return float(value)


def label_smoothing_loss(logits: torch.Tensor, labels: torch.Tensor, epsilon: float = 0.1) -> torch.Tensor:
    """Mean cross-entropy against the LS target ``(1-ε)·e_y + ε/K·1`` (ε spread over all K classes)."""
    return F.cross_entropy(logits, labels, label_smoothing=epsilon)


class OneHot(Target):
    """Plain cross-entropy against the 1-hot label."""

    name = "onehot"

    def forward(self, logits, labels, inputs=None):
        return F.cross_entropy(logits, labels)


class LabelSmoothing(Target):
    """Cross-entropy against ``(1-ε)·e_y + ε/K·1``."""

    name = "ls"

    def __init__(self, epsilon: float = 0.1) -> None:
        super().__init__()
        self.epsilon = check_unit_interval("epsilon", epsilon)

    def forward(self, logits, labels, inputs=None):
        return label_smoothing_loss(logits, labels, self.epsilon)
