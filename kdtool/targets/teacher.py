"""What every distillation loss shares: a frozen teacher network and the KL divergence to it."""

from __future__ import annotations

import torch
from torch import nn


def kl_divergence(teacher_log_probs: torch.Tensor, student_log_probs: torch.Tensor) -> torch.Tensor:
    """Per-sample ``KL(teacher ‖ student) = Σ_k t_k (log t_k − log p_k)`` (B), from log-probabilities.

    ``teacher_log_probs`` may hold ``-inf`` (classes the teacher gives no mass): ``0·log 0`` counts as 0.
    """
    t = teacher_log_probs.exp()
    return (torch.special.xlogy(t, t) - t * student_log_probs).sum(1)


class FrozenTeacher:
    """A trained network used for inference only, in eval mode and without gradients.

    It is deliberately not an ``nn.Module`` attribute of the loss: the optimizer, the engine's
    train()/eval() switches, checkpoints and model copies must never see the teacher. It follows the
    batch to its device on first use, and a batch asked for twice (a mixed batch's two loss terms)
    runs the network once.
    """

    def __init__(self, network: nn.Module) -> None:
        self.network = network.eval().requires_grad_(False)
        self._device: torch.device | None = None
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def wrap(cls, teacher: nn.Module | FrozenTeacher) -> FrozenTeacher:
        """``teacher`` itself if already frozen, else a frozen wrapper of the network."""
        return teacher if isinstance(teacher, cls) else cls(teacher)

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        """The teacher's float32 logits for ``inputs``."""
        if self._last is not None and self._last[0] is inputs:
            return self._last[1]
        if self._device != inputs.device:
            self.network.to(inputs.device)
            self._device = inputs.device
        logits = self.network(inputs).float()
        self._last = (inputs, logits)
        return logits
