"""What every distillation loss shares: the teacher's logits (from a frozen network, or given with the batch
by a teacher cache), the KL divergence to them, logit standardisation and the hard-label cross-entropy."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdtool.errors import KdtoolError
from kdtool.losses.base import Target


def check_temperature(temperature: float) -> None:
    """Raise a KdtoolError unless the softmax temperature T > 0."""
    if not temperature > 0.0:
        raise KdtoolError(f"--temperature must be positive, got {temperature}")


def kl_divergence(teacher_log_probs: torch.Tensor, student_log_probs: torch.Tensor) -> torch.Tensor:
    """Per-sample ``KL(teacher ‖ student) = Σ_k t_k (log t_k − log p_k)`` (B), from log-probabilities.

    ``teacher_log_probs`` may hold ``-inf`` (classes the teacher gives no mass): ``0·log 0`` counts as 0.
    """
    t = teacher_log_probs.exp()
    return (torch.special.xlogy(t, t) - t * student_log_probs).sum(1)


def as_float(logits: torch.Tensor) -> torch.Tensor:
    """Logits in float32 for a loss (reduced-precision ones under AMP), float64 kept as it is."""
    return logits if logits.dtype == torch.float64 else logits.float()


def standardize_logits(logits: torch.Tensor) -> torch.Tensor:
    """Each row z-scored over its K entries, ``(z − mean(z)) / (1e-7 + std(z))`` (Sun et al., CVPR 2024),
    exactly as the authors' ``normalize`` (sunshangquan/logit-standardization-KD, mdistiller/distillers/KD.py,
    commit f6e5aa5172bad618e801163c3385322eea673754): ``std`` is torch.std's K−1 sample deviation, so the
    temperature means what it means in their configs (the population deviation would scale it by √(K/(K−1))).

    A row of equal logits (a zero-initialised head) maps to 0 with the authors' finite gradient: torch.std's
    backward is 0 at zero variance, while the square root of a zero variance has an infinite derivative (0·∞ =
    NaN). So the variance is clamped at the smallest normal float before the root: no other value changes, and
    the clamp's zero gradient there is torch.std's (and the exact derivative, the deviation's term being
    multiplied by the centred row, 0).
    """
    logits = as_float(logits)
    centred = logits - logits.mean(1, keepdim=True)
    variance = centred.square().sum(1, keepdim=True) / (logits.shape[1] - 1)
    return centred / (1e-7 + variance.clamp_min(torch.finfo(logits.dtype).tiny).sqrt())


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


class DistillationTarget(Target):
    """``ce_weight·CE(e_y, softmax(z_s)) + D(z_s, z_t)``: a distillation term D between the student's logits
    and a teacher's, for subclasses to define in :meth:`distillation_loss`, plus the hard-label cross-entropy.

    The teacher's logits come from ``teacher``, a frozen network run on the student's exact batch, or,
    with ``teacher=None``, with the batch itself (``teacher_logits``: a teacher cache replays them).
    ``class_index`` (optional) picks the teacher outputs of the student's classes, in the student's
    order; the teacher's logits are sliced *before* any softmax. With ``standardize`` (logit standardisation,
    :func:`standardize_logits`) D sees both logit vectors z-scored, as in the authors' code; the
    cross-entropy always keeps the raw student logits. :meth:`balance` subtracts ``τ·log π`` from the teacher's
    logits (after the slicing, before any softening or standardisation): post-hoc logit adjustment of a biased
    teacher (Menon et al., ICLR 2021, eq. 9), for every distillation loss alike.
    """

    def __init__(
        self,
        teacher: nn.Module | FrozenTeacher | None,
        class_index: Sequence[int] | None = None,
        ce_weight: float = 0.0,
        standardize: bool = False,
    ) -> None:
        super().__init__()
        self.teacher = None if teacher is None else FrozenTeacher.wrap(teacher)
        index = None if class_index is None else torch.as_tensor(list(class_index), dtype=torch.long)
        self.register_buffer("class_index", index, persistent=False)
        self.ce_weight, self.standardize = float(ce_weight), bool(standardize)
        self.register_buffer("teacher_shift", None, persistent=False)

    def balance(self, shift: torch.Tensor) -> None:
        """Teacher logits minus ``shift`` (``τ·log π`` of the student's classes) from now on."""
        self.teacher_shift = shift.float()

    def teacher_logits(self, inputs: torch.Tensor | None, given: torch.Tensor | None = None) -> torch.Tensor:
        """The teacher's logits for the student's classes (no gradient): ``given`` ones, or the network's."""
        if given is None:
            if self.teacher is None:
                raise KdtoolError("this distillation loss has no teacher network: its batches must bring the "
                                  "teacher's logits (a teacher cache)")  # fmt: skip
            if inputs is None:
                raise KdtoolError("knowledge distillation needs the input batch to run the teacher on")
            given = self.teacher(inputs)
        given = as_float(given.detach())
        given = given if self.class_index is None else given[:, self.class_index]
        return given if self.teacher_shift is None else given - self.teacher_shift

    def forward(self, logits, labels, inputs=None, teacher_logits=None):
        return self.loss(logits, self.teacher_logits(inputs, teacher_logits), labels)

    def loss(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean loss over the batch, from the student's and the teacher's logits (student's classes)."""
        student, teacher = student_logits, teacher_logits
        if self.standardize:
            student, teacher = standardize_logits(student), standardize_logits(teacher)
        loss = self.distillation_loss(student, teacher, labels)
        if self.ce_weight > 0.0:
            loss = loss + self.ce_weight * F.cross_entropy(as_float(student_logits), labels)
        return loss

    def distillation_loss(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """The distillation term D, batch mean (of standardised logits with ``standardize``)."""
        raise NotImplementedError
