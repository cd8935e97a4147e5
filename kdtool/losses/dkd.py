"""Decoupled Knowledge Distillation (Zhao et al., CVPR 2022, "Decoupled Knowledge Distillation").

With ``p = softmax(z/T)`` for a sample of class y, ``b = [p_y, 1 − p_y]`` (target vs all non-target
mass) and ``p̂`` the softmax of ``z/T`` over the non-target classes only (class y removed)::

    TCKD = KL(b_t ‖ b_s)        NCKD = KL(p̂_t ‖ p̂_s)        DKD = T²·(α·TCKD + β·NCKD)

Classic KD is the special case ``KL(p_t ‖ p_s) = TCKD + (1 − p_{t,y})·NCKD``: DKD frees NCKD's weight
from the teacher's confidence. The paper trains with ``CE(e_y, softmax(z_s)) + w(epoch)·DKD``, ``w`` a
linear warm-up from 0 to 1 over the first 20 epochs (per epoch, as the authors' code: ``min(e/20, 1)``
for the 1-based epoch e); its CIFAR-100 setting is α = 1, β = 8, T = 4, CE weight 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdtool.errors import KdtoolError
from kdtool.losses.teacher import (
    DistillationTarget,
    FrozenTeacher,
    as_float,
    check_temperature,
    kl_divergence,
)


def check_dkd_options(alpha: float, beta: float, warmup_epochs: int) -> None:
    """Raise a KdtoolError unless α, β ≥ 0 and the warm-up is ≥ 0 epochs."""
    for flag, value in (("--dkd-alpha", alpha), ("--dkd-beta", beta), ("--dkd-warmup-epochs", warmup_epochs)):
        if not value >= 0:
            raise KdtoolError(f"{flag} must be ≥ 0, got {value}")


def _target_vs_rest(log_probs: torch.Tensor, is_target: torch.Tensor) -> torch.Tensor:
    """B×2 log-probabilities ``[log p_y, log(1 − p_y)]``, the second as a log-sum-exp (never log of 1 − p)."""
    rest = log_probs.masked_fill(is_target, float("-inf")).logsumexp(1)
    return torch.stack([log_probs[is_target], rest], dim=1)


def non_target(logits: torch.Tensor, is_target: torch.Tensor) -> torch.Tensor:
    """B×(K−1): each row's logits without its target class, in class order."""
    return logits[~is_target].view(logits.shape[0], logits.shape[1] - 1)


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
) -> torch.Tensor:
    """The DKD term ``T²·(α·TCKD + β·NCKD)``, batch mean, without cross-entropy or warm-up.

    ``teacher_logits`` is a fixed target (detached). Both KL divergences are summed over their classes.
    """
    check_temperature(temperature)
    check_dkd_options(alpha, beta, 0)
    is_target = F.one_hot(labels, student_logits.shape[1]).bool()
    student = as_float(student_logits) / temperature
    teacher = as_float(teacher_logits.detach()) / temperature
    tckd = kl_divergence(
        _target_vs_rest(F.log_softmax(teacher, 1), is_target), _target_vs_rest(F.log_softmax(student, 1), is_target)
    )
    nckd = kl_divergence(
        F.log_softmax(non_target(teacher, is_target), 1), F.log_softmax(non_target(student, is_target), 1)
    )
    return (temperature**2 * (alpha * tckd + beta * nckd)).mean()


class DecoupledKD(DistillationTarget):
    """DKD: ``ce_weight·CE(e_y, softmax(z_s)) + w(epoch)·DKD``, ``w = min(1, (e+1)/warmup_epochs)`` for the
    0-based epoch e (1 throughout when ``warmup_epochs`` is 0); the engine reports the epoch through
    :meth:`on_epoch_start` (a loop of one's own calls it before each epoch).

    ``standardize`` z-scores both logit vectors before the temperature (logit standardisation); the
    cross-entropy keeps the raw student logits. Teacher and ``class_index`` as in
    :class:`~kdtool.losses.teacher.DistillationTarget`.
    """

    name = "dkd"

    def __init__(
        self,
        teacher: nn.Module | FrozenTeacher | None,
        ce_weight: float = 1.0,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        warmup_epochs: int = 20,
        class_index: Sequence[int] | None = None,
        standardize: bool = False,
    ) -> None:
        check_temperature(temperature)
        check_dkd_options(alpha, beta, warmup_epochs)
        super().__init__(teacher, class_index, ce_weight, standardize)
        self.alpha, self.beta = float(alpha), float(beta)
        self.temperature, self.warmup_epochs = float(temperature), int(warmup_epochs)
        self.epoch = 0

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def warmup_weight(self) -> float:
        """``w`` of the current epoch."""
        return 1.0 if self.warmup_epochs == 0 else min(1.0, (self.epoch + 1) / self.warmup_epochs)

    def distillation_loss(self, student_logits, teacher_logits, labels):
        term = dkd_loss(student_logits, teacher_logits, labels, self.alpha, self.beta, self.temperature)
        return self.warmup_weight * term

    def extra_repr(self) -> str:
        return (f"ce_weight={self.ce_weight}, alpha={self.alpha}, beta={self.beta}, temperature={self.temperature}, "
                f"warmup_epochs={self.warmup_epochs}, standardize={self.standardize}")  # fmt: skip
