"""Focal loss ``-(1-p_y)^γ log p_y`` (Lin et al. 2017) with a fixed γ (FL-3: γ = 3) or the
sample-dependent schedule of Mukhoti et al. 2020 (FLSD-53: γ = 5 when p_y < 0.2, else γ = 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdtool.errors import KdtoolError
from kdtool.losses.base import Target

ADAPTIVE = "adaptive"


def parse_focal_gamma(value: str | float) -> float | str:
    """``"adaptive"`` (FLSD-53) or a number γ ≥ 0."""
    if isinstance(value, str) and value.strip().lower() == ADAPTIVE:
        return ADAPTIVE
    try:
        gamma = float(value)
    except ValueError:
        raise KdtoolError(f"--focal-gamma takes a number ≥ 0 or 'adaptive', got {value!r}") from None
    if not gamma >= 0:
        raise KdtoolError(f"--focal-gamma must be ≥ 0, got {value}")
    return gamma


def flsd53_gamma(p_true: torch.Tensor) -> torch.Tensor:
    """Mukhoti et al.'s schedule: γ = 5 for samples with p_y < 0.2, γ = 3 otherwise."""
    return torch.where(p_true < 0.2, 5.0, 3.0)


class FocalLoss(Target):
    """Focal loss, batch mean. ``gamma``: a number, or ``"adaptive"`` for FLSD-53."""

    name = "focal"

    def __init__(self, gamma: float | str = 3.0) -> None:
        super().__init__()
        self.gamma = parse_focal_gamma(gamma)

    def forward(self, logits, labels, inputs=None):
        log_p_true = F.log_softmax(logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1)
        p_true = log_p_true.exp()
        # The schedule picks γ from the current confidence; it is a choice, not something to differentiate.
        gamma = flsd53_gamma(p_true.detach()) if self.gamma == ADAPTIVE else self.gamma
        return -((1.0 - p_true).pow(gamma) * log_p_true).mean()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"
