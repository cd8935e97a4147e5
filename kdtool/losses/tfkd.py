"""Teacher-free knowledge distillation (Yuan et al. 2020, "Revisiting Knowledge Distillation via
Label Smoothing Regularization"), in the paper's form::

    L = (1-α)·CE(e_y, p) + α·m·KL(p^t_τ ‖ p_τ)          p_τ = softmax(z/τ)

KL is summed over the classes and averaged over the batch; ``m`` is an extra multiplier (1 in the
paper). ``tfkd-reg`` uses a hand-made virtual teacher: probability ``a`` on the true class and
``(1-a)/(K-1)`` on every other class, softened as ``p^t_τ = softmax(p^d/τ)``. ``tfkd-self`` uses a
pre-trained copy of the student: ``p^t_τ = softmax(z_teacher/τ)``.

The authors' reference code differs from the paper: its ``KLDivLoss()`` averages over B·K
elements (so its KL is the per-sample KL divided by K), it multiplies by a ``multiplier`` (and by
τ² in the self variant), and in the regularisation variant it does not divide the student's
logits by τ. ``--tfkd-multiplier`` absorbs the scale differences (reference multiplier m_ref
corresponds to m = m_ref/K for tfkd-reg and m = m_ref·τ²/K for tfkd-self); the unsoftened student
of the reference's regularisation variant is not reproduced.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdtool.errors import KdtoolError
from kdtool.losses.base import Target
from kdtool.losses.teacher import FrozenTeacher, kl_divergence


def virtual_teacher(labels: torch.Tensor, num_classes: int, correct_prob: float) -> torch.Tensor:
    """The hand-made teacher ``p^d``: ``a`` on the label, ``(1-a)/(K-1)`` elsewhere (B×K)."""
    rest = (1.0 - correct_prob) / (num_classes - 1)
    probs = torch.full((labels.shape[0], num_classes), rest, device=labels.device)
    return probs.scatter(1, labels[:, None], correct_prob)


def check_tfkd_options(temperature: float, weight: float, multiplier: float, correct_prob: float = 0.9) -> None:
    """Raise a KdtoolError naming the first TF-KD option out of range."""
    if not temperature > 0:
        raise KdtoolError(f"--tfkd-temperature must be > 0, got {temperature}")
    if not 0.0 <= weight <= 1.0:
        raise KdtoolError(f"--tfkd-weight must be in [0, 1], got {weight}")
    if not multiplier > 0:
        raise KdtoolError(f"--tfkd-multiplier must be > 0, got {multiplier}")
    if not 0.0 < correct_prob < 1.0:
        raise KdtoolError(f"--tfkd-correct-prob must be in (0, 1), got {correct_prob}")


class TeacherFreeKD(Target):
    """The shared loss; subclasses say where the softened teacher's log-probabilities come from."""

    def __init__(self, temperature: float, weight: float, multiplier: float) -> None:
        super().__init__()
        check_tfkd_options(temperature, weight, multiplier)
        self.temperature = float(temperature)
        self.weight = float(weight)
        self.multiplier = float(multiplier)

    def teacher_log_probs(self, logits: torch.Tensor, labels: torch.Tensor, inputs: torch.Tensor | None):
        """``log p^t_τ`` (B×K), without gradient."""
        raise NotImplementedError

    def forward(self, logits, labels, inputs=None):
        log_student = F.log_softmax(logits.float() / self.temperature, dim=1)
        log_teacher = self.teacher_log_probs(logits, labels, inputs)
        kl = kl_divergence(log_teacher, log_student).mean()
        ce = F.cross_entropy(logits.float(), labels)
        return (1.0 - self.weight) * ce + self.weight * self.multiplier * kl

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, weight={self.weight}, multiplier={self.multiplier}"


class TeacherFreeRegularization(TeacherFreeKD):
    """``tfkd-reg``: distil from the virtual teacher (probability ``correct_prob`` on the label)."""

    name = "tfkd-reg"

    def __init__(self, num_classes: int, temperature: float = 20.0, weight: float = 0.1,
                 multiplier: float = 1.0, correct_prob: float = 0.9) -> None:  # fmt: skip
        super().__init__(temperature, weight, multiplier)
        check_tfkd_options(temperature, weight, multiplier, correct_prob)
        if correct_prob < 1.0 / num_classes:  # the true class must stay the most likely one
            raise KdtoolError(f"--tfkd-correct-prob must be at least 1/K = {1 / num_classes:.3g}, got {correct_prob}")
        self.num_classes = num_classes
        self.correct_prob = float(correct_prob)

    def teacher_log_probs(self, logits, labels, inputs):
        teacher = virtual_teacher(labels, self.num_classes, self.correct_prob)
        return F.log_softmax(teacher / self.temperature, dim=1)


class TeacherFreeSelf(TeacherFreeKD):
    """``tfkd-self``: distil from a frozen, pre-trained copy of the student (kept in eval mode)."""

    name = "tfkd-self"

    def __init__(self, teacher: nn.Module | FrozenTeacher, temperature: float = 20.0, weight: float = 0.1,
                 multiplier: float = 1.0) -> None:  # fmt: skip
        super().__init__(temperature, weight, multiplier)
        self.teacher = FrozenTeacher.wrap(teacher)

    def teacher_log_probs(self, logits, labels, inputs):
        if inputs is None:
            raise KdtoolError("tfkd-self needs the batch inputs to run its teacher")
        return F.log_softmax(self.teacher(inputs) / self.temperature, dim=1)
