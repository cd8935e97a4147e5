"""DIST (Huang et al., NeurIPS 2022, "Knowledge Distillation from A Stronger Teacher").

With ``P_s = softmax(s/T)``, ``P_t = softmax(t/T)`` (B×K) and ``ρ`` the Pearson correlation of two
vectors (the cosine similarity after subtracting each vector's mean)::

    L_inter = 1 − mean_i ρ(P_s[i,:], P_t[i,:])     each sample's row: relations between classes
    L_intra = 1 − mean_j ρ(P_s[:,j], P_t[:,j])     each class's column over the batch
    DIST    = T²·(β·L_inter + γ·L_intra)

The paper trains with ``CE(e_y, softmax(z_s)) + DIST``. Its ImageNet setting is β = γ = 1, T = 1; its
CIFAR-100 setting, kdtool's default, T = 4 with the DIST term weighted 2, i.e. β = γ = 2. As in the
authors' code, ``ρ`` adds 1e-8 to the product of the norms, so a constant vector (a batch of one, a
column the batch never varies) counts as uncorrelated instead of dividing by 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdtool.errors import KdtoolError
from kdtool.losses.teacher import DistillationTarget, FrozenTeacher, as_float, check_temperature


def check_dist_options(beta: float, gamma: float) -> None:
    """Raise a KdtoolError unless the weights β, γ ≥ 0."""
    for flag, value in (("--dist-beta", beta), ("--dist-gamma", gamma)):
        if not value >= 0:
            raise KdtoolError(f"{flag} must be ≥ 0, got {value}")


def pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The Pearson correlation of each row of ``a`` with the same row of ``b`` (B)."""
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    beta: float = 1.0,
    gamma: float = 1.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """The DIST term ``T²·(β·L_inter + γ·L_intra)`` over the batch, without cross-entropy."""
    check_temperature(temperature)
    check_dist_options(beta, gamma)
    p_s = F.softmax(as_float(student_logits) / temperature, dim=1)
    p_t = F.softmax(as_float(teacher_logits.detach()) / temperature, dim=1)
    inter = 1.0 - pearson_rows(p_s, p_t).mean()
    intra = 1.0 - pearson_rows(p_s.T, p_t.T).mean()
    return temperature**2 * (beta * inter + gamma * intra)


class DISTKD(DistillationTarget):
    """DIST: ``ce_weight·CE(e_y, softmax(z_s)) + DIST``; teacher, ``class_index`` and ``standardize`` as in
    :class:`~kdtool.losses.teacher.DistillationTarget`."""

    name = "dist"

    def __init__(
        self,
        teacher: nn.Module | FrozenTeacher | None,
        ce_weight: float = 1.0,
        beta: float = 2.0,
        gamma: float = 2.0,
        temperature: float = 4.0,
        class_index: Sequence[int] | None = None,
        standardize: bool = False,
    ) -> None:
        check_temperature(temperature)
        check_dist_options(beta, gamma)
        super().__init__(teacher, class_index, ce_weight, standardize)
        self.beta, self.gamma, self.temperature = float(beta), float(gamma), float(temperature)

    def distillation_loss(self, student_logits, teacher_logits, labels):
        return dist_loss(student_logits, teacher_logits, self.beta, self.gamma, self.temperature)

    def extra_repr(self) -> str:
        return (f"ce_weight={self.ce_weight}, beta={self.beta}, gamma={self.gamma}, temperature={self.temperature}, "
                f"standardize={self.standardize}")  # fmt: skip
