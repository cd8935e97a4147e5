"""What every distillation loss shares: the teacher's logits (from a frozen network, or given with the batch
by a teacher cache), the KL divergence to them, and logit standardisation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
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


def standardize_logits(logits: torch.Tensor) -> torch.Tensor:
    """Each row z-scored over its K entries, ``(z − mean(z)) / std(z)`` (Sun et al., CVPR 2024).

    ``std`` is the population standard deviation of the paper's equation (the authors' code divides
    by the K−1 sample deviation, a factor √(K/(K−1)) in the temperature); a constant row maps to 0.
    """
    logits = logits.float()
    centred = logits - logits.mean(1, keepdim=True)
    return centred / (centred.square().mean(1, keepdim=True).sqrt() + 1e-7)


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
    """A loss between the student's logits and a teacher's, for subclasses to define in :meth:`loss`.

    The teacher's logits come from ``teacher``, a frozen network run on the student's exact batch, or,
    with ``teacher=None``, with the batch itself (``teacher_logits``: a teacher cache replays them).
    ``class_index`` (optional) picks the teacher outputs of the student's classes, in the student's
    order; the teacher's logits are sliced *before* any softmax. :meth:`balance` subtracts ``τ·log π`` from
    them (after the slicing, before any softening): post-hoc logit adjustment of a biased teacher (Menon et
    al., ICLR 2021, eq. 9), for every distillation loss alike.
    """

    def __init__(self, teacher: nn.Module | FrozenTeacher | None, class_index: Sequence[int] | None = None) -> None:
        super().__init__()
        self.teacher = None if teacher is None else FrozenTeacher.wrap(teacher)
        index = None if class_index is None else torch.as_tensor(list(class_index), dtype=torch.long)
        self.register_buffer("class_index", index, persistent=False)
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
        given = given.detach().float()
        given = given if self.class_index is None else given[:, self.class_index]
        return given if self.teacher_shift is None else given - self.teacher_shift

    def forward(self, logits, labels, inputs=None, teacher_logits=None):
        return self.loss(logits, self.teacher_logits(inputs, teacher_logits), labels)

    def loss(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean loss over the batch, from the student's and the teacher's logits (student's classes)."""
        raise NotImplementedError
