"""Distillation targets: Hinton KD from a teacher network, and LLS-ST from a Q artifact alone.

Both train the student with one loss, :func:`kd_loss`::

    L = β·CE(e_y, softmax(z_s)) + (1-β)·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))

kdtool's reduction: the KL divergence is summed over the classes of each sample, then the whole
loss is averaged over the batch (PyTorch's ``reduction="batchmean"``, not ``"mean"`` over B·K),
and the soft term is always scaled by T², so its gradient keeps the same size across temperatures.
KL differs from the paper's cross-entropy ``H(softmax(z_t/T), softmax(z_s/T))`` only by the
teacher's entropy, a constant: the gradients are identical, and the loss is 0 when the student
matches the teacher.

For LLS-ST the teacher's logits are replaced by ``log t`` with the class-wise target
``t = (1-α)·e_y + α·softmax(Q[y])``; at T = 1 the student is trained towards ``t`` itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdtool.errors import KdtoolError
from kdtool.qmatrix import QMatrix
from kdtool.targets.base import Target
from kdtool.targets.simple import check_unit_interval
from kdtool.targets.teacher import FrozenTeacher, kl_divergence


def check_kd_options(beta: float, temperature: float) -> None:
    """Raise a KdtoolError unless β ∈ [0, 1] and T > 0."""
    if not 0.0 <= beta <= 1.0:
        raise KdtoolError(f"--beta must be in [0, 1], got {beta}")
    if not temperature > 0.0:
        raise KdtoolError(f"--temperature must be positive, got {temperature}")


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    beta: float = 0.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Hinton's distillation loss, batch mean (see the module docstring for the exact reduction).

    ``teacher_logits`` is a fixed target: it is detached, and may hold ``-inf`` for classes the
    teacher gives no mass. ``labels`` only matter when ``beta`` > 0.
    """
    check_kd_options(beta, temperature)
    log_p = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_t = F.log_softmax(teacher_logits.detach().float() / temperature, dim=1)
    loss = (1.0 - beta) * temperature**2 * kl_divergence(log_t, log_p)
    if beta > 0.0:
        loss = loss + beta * F.cross_entropy(student_logits.float(), labels, reduction="none")
    return loss.mean()


class KnowledgeDistillation(Target):
    """Hinton KD: the teacher network, frozen (:class:`FrozenTeacher`), sees exactly the student's batch.

    ``class_index`` (optional) picks the teacher outputs of the student's classes, in the
    student's order; the teacher's logits are sliced *before* the softmax.
    """

    name = "kd"

    def __init__(
        self,
        teacher: nn.Module | FrozenTeacher,
        beta: float = 0.0,
        temperature: float = 1.0,
        class_index: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        check_kd_options(beta, temperature)
        self.teacher = FrozenTeacher.wrap(teacher)
        self.beta, self.temperature = float(beta), float(temperature)
        index = None if class_index is None else torch.as_tensor(list(class_index), dtype=torch.long)
        self.register_buffer("class_index", index, persistent=False)

    def teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The teacher's logits for the student's classes (no gradient)."""
        logits = self.teacher(inputs)
        return logits if self.class_index is None else logits[:, self.class_index]

    def forward(self, logits, labels, inputs=None):
        if inputs is None:
            raise KdtoolError("knowledge distillation needs the input batch to run the teacher on")
        return kd_loss(logits, self.teacher_logits(inputs), labels, self.beta, self.temperature)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, temperature={self.temperature}"


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
