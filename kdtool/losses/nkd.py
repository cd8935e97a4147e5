"""Normalized Knowledge Distillation (Yang et al., ICCV 2023, "From Knowledge Distillation to Self-Knowledge
Distillation: A Unified Approach with Normalized Loss and Customized Soft Labels").

NKD splits KD into the target class and the *normalised* non-target classes. With ``p = softmax(z)`` at T = 1
for the target term and ``p̂ = softmax(ẑ/T)`` over the non-target logits ``ẑ`` (class y removed)::

    L_target = −mean_i p_t,i[y] · log p_s,i[y]
    L_non    = −γ·T²·mean_i Σ_k p̂_t,i[k] · log p̂_s,i[k]          NKD = L_target + L_non

and the student trains with ``ce_weight·CE(e_y, p_s) + NKD``. Both terms are cross-entropies, as the
authors wrote them (not KL divergences): the loss is not 0 when the student matches the teacher, but its
gradient is KL's. Transcribed from the authors' code: yzd-v/cls_KD, mmcls/models/dis_losses/nkd.py (class
``NKDLoss``, commit 9466b3f3d8e06a1021d722bf3f4a7ebee99e3aed), added to the student's own cross-entropy by
mmcls/models/classifiers/distiller.py (``ori_loss`` weight 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdtool.errors import KdtoolError
from kdtool.losses.dkd import non_target
from kdtool.losses.teacher import DistillationTarget, FrozenTeacher, as_float, check_temperature


def check_nkd_options(gamma: float) -> None:
    """Raise a KdtoolError unless the non-target weight γ ≥ 0."""
    if not gamma >= 0:
        raise KdtoolError(f"--nkd-gamma must be ≥ 0, got {gamma}")


def nkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    gamma: float = 1.5,
    temperature: float = 1.0,
) -> torch.Tensor:
    """The NKD term ``L_target + L_non`` (see the module docstring), batch mean, without the cross-entropy."""
    check_temperature(temperature)
    check_nkd_options(gamma)
    student, teacher = as_float(student_logits), as_float(teacher_logits.detach())
    is_target = F.one_hot(labels, student.shape[1]).bool()
    target = -(F.softmax(teacher, 1)[is_target] * F.log_softmax(student, 1)[is_target]).mean()
    log_s = F.log_softmax(non_target(student, is_target) / temperature, 1)
    p_t = F.softmax(non_target(teacher, is_target) / temperature, 1)
    return target - gamma * temperature**2 * (p_t * log_s).sum(1).mean()


class NormalizedKD(DistillationTarget):
    """NKD: ``ce_weight·CE(e_y, softmax(z_s)) + NKD``; teacher, ``class_index`` and ``standardize`` as in
    :class:`~kdtool.losses.teacher.DistillationTarget`."""

    name = "nkd"

    def __init__(
        self,
        teacher: nn.Module | FrozenTeacher | None,
        ce_weight: float = 1.0,
        gamma: float = 1.5,
        temperature: float = 1.0,
        class_index: Sequence[int] | None = None,
        standardize: bool = False,
    ) -> None:
        check_temperature(temperature)
        check_nkd_options(gamma)
        super().__init__(teacher, class_index, ce_weight, standardize)
        self.gamma, self.temperature = float(gamma), float(temperature)

    def distillation_loss(self, student_logits, teacher_logits, labels):
        return nkd_loss(student_logits, teacher_logits, labels, self.gamma, self.temperature)

    def extra_repr(self) -> str:
        return (f"ce_weight={self.ce_weight}, gamma={self.gamma}, temperature={self.temperature}, "
                f"standardize={self.standardize}")  # fmt: skip
