"""Long-tail baselines: logit-adjusted loss, label-aware smoothing, class-balanced weights of any method.

Notation: n_y training samples of class y, prior π_y = n_y / N.

- Logit-adjusted loss (Menon et al., ICLR 2021, eq. 10): ``CE(e_y, softmax(z + τ·log π))``; the prediction is
  the raw ``z`` (the network never sees the shift). τ = 1 is Balanced Softmax (Ren et al., NeurIPS 2020).
- Label-aware smoothing (Zhong et al., CVPR 2021, MiSLAS): LS with a per-class ε_y from ε_tail (rarest class) to
  ε_head (most frequent) along the authors' default "concave" curve
  ``ε_y = ε_tail + (ε_head − ε_tail)·sin(π/2 · (n_y − n_min)/(n_max − n_min))``, transcribed from
  github.com/dvlab-research/MiSLAS, methods.py (class ``LabelAwareSmoothing``, commit 0fc381e3); defaults
  ε_head = 0.3, ε_tail = 0 are the authors' CIFAR-10-LT ρ = 100 config
  (config/cifar10/cifar10_imb001_stage2_mislas.yaml).
- Class-balanced weights (Cui et al., CVPR 2019, eq. 3): ``w_y ∝ (1 − β)/(1 − β^{n_y})``, normalised so that
  ``Σ_y w_y = K``; a sample of class y weighs ``w_y`` in any method's loss (:class:`ClassWeighted`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from kdtool.errors import KdtoolError
from kdtool.losses.base import Target

CLASS_WEIGHTS = ("none", "effective")
# MiSLAS's CIFAR-10-LT (ρ = 100) setting: the most frequent class smoothed by 0.3, the rarest not at all
LABEL_AWARE_HEAD, LABEL_AWARE_TAIL = 0.3, 0.0


def check_long_tail_options(tau: float, class_weights: str, cb_beta: float) -> None:
    """Raise a KdtoolError naming the first invalid long-tail option."""
    if not (tau > 0 and math.isfinite(tau)):
        raise KdtoolError(f"--tau must be a positive number, got {tau}")
    if class_weights not in CLASS_WEIGHTS:
        raise KdtoolError(f"unknown --class-weights {class_weights!r}: choose one of {', '.join(CLASS_WEIGHTS)}")
    if not 0.0 < cb_beta < 1.0:
        raise KdtoolError(f"--cb-beta must be in (0, 1), got {cb_beta}")


def log_prior(counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """``log π`` (K, float32) from the training counts; every class needs a training sample."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if counts.numel() and counts.min() <= 0:
        missing = int((counts <= 0).nonzero()[0])
        raise KdtoolError(f"class {missing} has no training sample: its prior log π_y is undefined (give data with "
                          f"every class, or remove the option that needs the class prior)")  # fmt: skip
    return (counts / counts.sum()).log().float()


def effective_number_weights(counts: Sequence[int] | torch.Tensor, beta: float = 0.9999) -> torch.Tensor:
    """Class-balanced weights ``(1 − β)/(1 − β^{n_y})`` normalised to sum to K (Cui et al. 2019, eq. 3)."""
    n = torch.as_tensor(counts, dtype=torch.float64)
    weights = (1.0 - beta) / (1.0 - torch.pow(beta, n))
    return (weights / weights.sum() * n.numel()).float()


def label_aware_epsilons(counts: Sequence[int] | torch.Tensor, head: float, tail: float) -> torch.Tensor:
    """MiSLAS's concave per-class ε (see the module docstring); ``head`` for every class when counts are equal."""
    n = torch.as_tensor(counts, dtype=torch.float64)
    spread = n.max() - n.min()
    if spread == 0:
        return torch.full(n.shape, head, dtype=torch.float32)
    return (tail + (head - tail) * torch.sin((n - n.min()) * math.pi / (2 * spread))).float()


class LogitAdjusted(Target):
    """Logit-adjusted cross-entropy ``CE(e_y, softmax(z + τ·log π))``; predictions stay ``argmax z``."""

    name = "logit-adjust"

    def __init__(self, counts: Sequence[int] | torch.Tensor, tau: float = 1.0) -> None:
        super().__init__()
        self.tau = tau
        self.register_buffer("shift", tau * log_prior(counts), persistent=False)

    def forward(self, logits, labels, inputs=None):
        return F.cross_entropy(logits.float() + self.shift, labels)


class LabelAwareSmoothing(Target):
    """Cross-entropy against ``(1 − ε_y)·e_y + ε_y/K·1`` with MiSLAS's per-class ε_y."""

    name = "label-aware"

    def __init__(self, counts: Sequence[int] | torch.Tensor, head: float = LABEL_AWARE_HEAD,
                 tail: float = LABEL_AWARE_TAIL) -> None:  # fmt: skip
        super().__init__()
        self.register_buffer("epsilon", label_aware_epsilons(counts, head, tail), persistent=False)

    def forward(self, logits, labels, inputs=None):
        log_p = F.log_softmax(logits.float(), dim=1)
        eps = self.epsilon[labels]
        nll = -log_p.gather(1, labels[:, None]).squeeze(1)
        return ((1.0 - eps) * nll - eps * log_p.mean(1)).mean()


class ClassWeighted(Target):
    """Any method with each sample weighted by its class's weight: ``Σ_c w_c · n_c · L_c / B``, where
    ``L_c`` is the method's batch-mean loss over the ``n_c`` samples of class c in the batch.

    Exact for every method whose loss is a mean of per-sample terms (not DIST, whose inter-class term
    correlates the batch's samples). The method is called once per class present in the batch.
    """

    def __init__(self, method: Target, weights: torch.Tensor) -> None:
        super().__init__()
        self.method = method
        self.name = method.name
        self.register_buffer("weights", weights.float(), persistent=False)

    @property
    def row_sparse(self) -> bool:  # type: ignore[override]
        return self.method.row_sparse

    @property
    def lazy_rows(self):  # type: ignore[override]
        return self.method.lazy_rows

    @lazy_rows.setter
    def lazy_rows(self, value) -> None:
        self.method.lazy_rows = value

    @property
    def epoch_accumulators(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(f"method.{name}" for name in self.method.epoch_accumulators)

    def forward(self, logits, labels, inputs=None, **batch):
        total = logits.new_zeros((), dtype=torch.float32)
        for c in labels.unique().tolist():
            mask = labels == c
            picked = {k: v[mask] for k, v in batch.items() if v is not None}
            loss = self.method(logits[mask], labels[mask], None if inputs is None else inputs[mask], **picked)
            total = total + self.weights[c] * mask.sum() * loss
        return total / labels.numel()

    def on_epoch_start(self, epoch: int) -> None:
        self.method.on_epoch_start(epoch)

    def on_epoch_end(self, epoch: int) -> None:
        self.method.on_epoch_end(epoch)

    def learned_q(self) -> torch.Tensor | None:
        return self.method.learned_q()
