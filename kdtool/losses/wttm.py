"""Weighted Transformed Teacher Matching (Zheng & Yang, ICLR 2024, "Knowledge Distillation Based on Transformed
Teacher Matching").

TTM drops the temperature on the student's side: the student's plain softmax ``p_s`` is matched to the teacher's
power-transformed distribution ``q = p_t^γ / Σ_k p_t,k^γ`` (γ = 1/T: ``q = softmax(z_t/T)``). WTTM weights each
sample by the transform's normaliser ``U_γ(p_t) = Σ_k p_t,k^γ``, larger where the teacher is less confident::

    WTTM = mean_i U_γ(p_t,i) · KL(q_i ‖ p_s,i)         L = ce_weight·CE(e_y, p_s) + weight·WTTM

Transcribed from the authors' code: zkxufo/TTM, distiller_zoo/wttm.py (class ``WTTM``, commit
2de9060d32b85221c00d864d47b8f68016491d86), with the total loss ``γ_r·CE + β·WTTM`` of helper/loops.py
(``-r`` and ``-b`` of train_student.py). Here q and U are computed in the log domain, ``log q = γ·log p_t −
logsumexp(γ·log p_t)``, which is the same value without ``p_t^γ`` underflowing for very small p_t.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdtool.errors import KdtoolError
from kdtool.losses.teacher import DistillationTarget, FrozenTeacher, as_float, kl_divergence


def check_wttm_options(gamma: float, weight: float) -> None:
    """Raise a KdtoolError unless the exponent γ > 0 and the weight ≥ 0."""
    if not gamma > 0:
        raise KdtoolError(f"--wttm-gamma must be positive (the power p_t^γ; γ = 1/T), got {gamma}")
    if not weight >= 0:
        raise KdtoolError(f"--wttm-weight must be ≥ 0, got {weight}")


def wttm_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, gamma: float = 0.2) -> torch.Tensor:
    """The WTTM term ``mean_i U_γ(p_t,i)·KL(q_i ‖ p_s,i)`` (see the module docstring), without cross-entropy."""
    check_wttm_options(gamma, 0.0)
    log_p = F.log_softmax(as_float(student_logits), dim=1)
    powered = gamma * F.log_softmax(as_float(teacher_logits.detach()), dim=1)
    log_norm = powered.logsumexp(1, keepdim=True)  # log U_γ(p_t)
    return (log_norm.squeeze(1).exp() * kl_divergence(powered - log_norm, log_p)).mean()


class WTTM(DistillationTarget):
    """WTTM: ``ce_weight·CE(e_y, softmax(z_s)) + weight·WTTM``; teacher, ``class_index`` and ``standardize`` as in
    :class:`~kdtool.losses.teacher.DistillationTarget`."""

    name = "wttm"

    def __init__(
        self,
        teacher: nn.Module | FrozenTeacher | None,
        ce_weight: float = 1.0,
        gamma: float = 0.2,
        weight: float = 4.0,
        class_index: Sequence[int] | None = None,
        standardize: bool = False,
    ) -> None:
        check_wttm_options(gamma, weight)
        super().__init__(teacher, class_index, ce_weight, standardize)
        self.gamma, self.weight = float(gamma), float(weight)

    def distillation_loss(self, student_logits, teacher_logits, labels):
        return self.weight * wttm_loss(student_logits, teacher_logits, self.gamma)

    def extra_repr(self) -> str:
        return (f"ce_weight={self.ce_weight}, gamma={self.gamma}, weight={self.weight}, "
                f"standardize={self.standardize}")  # fmt: skip
