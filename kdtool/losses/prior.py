"""Smoothing with a fixed prior θ read from a Q artifact (Preferential Label Smoothing: CLS, SEMLS).

Target ``t = (1-ε)·e_y + ε·θ_y`` with ``θ_y = softmax(Q[y])``; loss CE(t, p). ``kdtool make-prior``
writes such artifacts (logits ``log θ``, ``-inf`` where θ is 0); any Q artifact, e.g. one learned
by LLS, works as a prior too (the run composition turns the file into θ).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdtool.errors import KdtoolError
from kdtool.losses.base import Target
from kdtool.losses.simple import check_unit_interval


class PriorSmoothing(Target):
    """CE against ``(1-ε)e_y + ε θ_y``. Buffer ``theta``: the K×K prior, rows sum to 1."""

    name = "prior"

    def __init__(self, theta: torch.Tensor, epsilon: float = 0.1) -> None:
        super().__init__()
        if theta.ndim != 2 or theta.shape[0] != theta.shape[1]:
            raise KdtoolError(f"a prior must be K×K, got shape {tuple(theta.shape)}")
        self.epsilon = check_unit_interval("epsilon", epsilon)
        self.register_buffer("theta", theta.detach().float().clone())

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """The soft targets (B×K)."""
        one_hot = F.one_hot(labels, self.theta.shape[0]).float()
        return (1.0 - self.epsilon) * one_hot + self.epsilon * self.theta[labels]

    def forward(self, logits, labels, inputs=None):
        return -(self.targets(labels) * F.log_softmax(logits.float(), dim=1)).sum(1).mean()

    def extra_repr(self) -> str:
        return f"num_classes={self.theta.shape[0]}, epsilon={self.epsilon}"
