"""Distillation targets: Hinton KD from a teacher network, and LLS-ST from a Q artifact alone.

Both train the student with one loss, :func:`kd_loss`::

    L = β·CE(e_y, softmax(z_s)) + w·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)),   w = 1-β unless given

kdtool's reduction: the KL divergence is summed over the classes of each sample, then the whole
loss is averaged over the batch (PyTorch's ``reduction="batchmean"``, not ``"mean"`` over B·K),
and the soft term is always scaled by T², so its gradient keeps the same size across temperatures.
KL differs from the paper's cross-entropy ``H(softmax(z_t/T), softmax(z_s/T))`` only by the
teacher's entropy, a constant: the gradients are identical, and the loss is 0 when the student
matches the teacher.

With ``standardize`` (Sun et al., CVPR 2024) both logit vectors are z-scored before the temperature
(:func:`~kdtool.losses.teacher.standardize_logits`); the cross-entropy keeps the raw student logits. The
authors weight the two terms independently (CE 0.1, KD 9 at T = 2): ``kd_weight`` is that w.

For LLS-ST the teacher's logits are replaced by ``log t`` with the class-wise target
``t = (1-α)·e_y + α·softmax(Q[y])``; at T = 1 the student is trained towards ``t`` itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdtool.errors import KdtoolError
from kdtool.losses.base import Target
from kdtool.losses.simple import check_unit_interval
from kdtool.losses.teacher import (
    DistillationTarget,
    FrozenTeacher,
    as_float,
    check_temperature,
    kl_divergence,
)
from kdtool.q.matrix import QMatrix


def check_kd_options(beta: float, temperature: float, kd_weight: float | None = None) -> None:
    """Raise a KdtoolError unless β ∈ [0, 1], T > 0 and the KD weight w ≥ 0."""
    if not 0.0 <= beta <= 1.0:
        raise KdtoolError(f"--beta must be in [0, 1], got {beta}")
    check_temperature(temperature)
    if kd_weight is not None and not kd_weight >= 0:
        raise KdtoolError(f"--kd-weight must be ≥ 0, got {kd_weight}")


def soft_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))``, batch mean; the teacher's logits may hold ``-inf``."""
    log_p = F.log_softmax(as_float(student_logits) / temperature, dim=1)
    log_t = F.log_softmax(as_float(teacher_logits.detach()) / temperature, dim=1)
    return temperature**2 * kl_divergence(log_t, log_p).mean()


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    beta: float = 0.0,
    temperature: float = 1.0,
    standardize: bool = False,
    kd_weight: float | None = None,
) -> torch.Tensor:
    """Hinton's distillation loss, batch mean (see the module docstring for the exact reduction).

    ``teacher_logits`` is a fixed target: it is detached, and may hold ``-inf`` for classes the
    teacher gives no mass (not with ``standardize``). ``labels`` only matter when ``beta`` > 0.
    """
    target = KnowledgeDistillation(None, beta, temperature, standardize=standardize, kd_weight=kd_weight)
    return target.loss(student_logits, teacher_logits, labels)


class KnowledgeDistillation(DistillationTarget):
    """Hinton KD (:func:`kd_loss`) from a frozen teacher network that sees exactly the student's batch, or
    from teacher logits that come with the batch (``teacher=None``: a teacher cache).

    ``class_index`` (optional) picks the teacher outputs of the student's classes, in the
    student's order; the teacher's logits are sliced *before* the softmax.
    """

    name = "kd"

    def __init__(
        self,
        teacher: nn.Module | FrozenTeacher | None,
        beta: float = 0.0,
        temperature: float = 1.0,
        class_index: Sequence[int] | None = None,
        standardize: bool = False,
        kd_weight: float | None = None,
    ) -> None:
        check_kd_options(beta, temperature, kd_weight)
        super().__init__(teacher, class_index, beta, standardize)
        self.beta, self.temperature = float(beta), float(temperature)
        self.kd_weight = 1.0 - self.beta if kd_weight is None else float(kd_weight)

    def distillation_loss(self, student_logits, teacher_logits, labels):
        return self.kd_weight * soft_kd_loss(student_logits, teacher_logits, self.temperature)

    def extra_repr(self) -> str:
        return (f"beta={self.beta}, kd_weight={self.kd_weight}, temperature={self.temperature}, "
                f"standardize={self.standardize}")  # fmt: skip


class SubstituteTeacher(Target):
    """LLS-ST: class-wise targets ``(1-α)·e_y + α·softmax(Q[y])`` from a Q artifact; no teacher network."""

    name = "lls-st"

    def __init__(self, q: QMatrix, alpha: float | None = None, beta: float = 0.0, temperature: float = 1.0) -> None:
        super().__init__()
        check_kd_options(beta, temperature)
        self.q = q
        self.alpha = check_unit_interval("alpha", q.alpha if alpha is None else alpha)
        self.beta, self.temperature = float(beta), float(temperature)
        # A dense Q's K rows of log-targets are computed once and follow the model to its device, so a
        # step is one gather with no host transfer; a sparse Q builds its B rows per step in O(B·N).
        table = None if q.sparse is not None else q.log_targets(torch.arange(q.num_classes), self.alpha)
        self.register_buffer("log_target_table", table, persistent=False)

    def forward(self, logits, labels, inputs=None):
        # log t plays the teacher's logits: softmax(log t / 1) = t, and T ≠ 1 sharpens or flattens t.
        if self.log_target_table is not None:
            log_targets = self.log_target_table[labels]
        else:
            log_targets = self.q.log_targets(labels, self.alpha)
        return kd_loss(logits, log_targets, labels, self.beta, self.temperature)

    def extra_repr(self) -> str:
        return f"classes={self.q.num_classes}, alpha={self.alpha}, beta={self.beta}, temperature={self.temperature}"
