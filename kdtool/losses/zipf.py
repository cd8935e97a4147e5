"""Zipf's label smoothing (Liang et al. 2022, "Efficient One Pass Self-distillation with Zipf's
Label Smoothing").

The network's own current prediction ranks the non-target classes; the soft target gives the class
of rank r (1 = most likely non-target class) a mass proportional to ``1/r^s`` (Zipf's law with
exponent s) and the true class none. The loss is::

    L = CE(e_y, p) + λ·KL(z ‖ p̃)

where ``p̃`` is the prediction renormalised over the non-target classes (the true class masked
out), so the Zipf term shapes only how the non-target mass is spread. Differences from the paper:
the paper ranks classes by the votes of dense per-location predictions of the last feature map;
kdtool ranks them by the logits, which works with any model. The ranking is not differentiated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdtool.errors import KdtoolError
from kdtool.losses.base import Target


def zipf_targets(logits: torch.Tensor, labels: torch.Tensor, exponent: float = 1.0) -> torch.Tensor:
    """Zipf distribution over the non-target classes by their rank in ``logits`` (B×K, 0 on the label)."""
    on_label = F.one_hot(labels, logits.shape[1]).bool()
    masked = logits.detach().float().masked_fill(on_label, float("-inf"))
    rank = masked.argsort(dim=1, descending=True).argsort(dim=1)  # 0 = most likely non-target class
    weights = (rank + 1).float().pow(-exponent).masked_fill(on_label, 0.0)
    return weights / weights.sum(1, keepdim=True)


def check_zipf_options(weight: float, exponent: float) -> None:
    """Raise a KdtoolError unless λ ≥ 0 and the exponent s > 0."""
    if not weight >= 0:
        raise KdtoolError(f"--zipf-weight must be ≥ 0, got {weight}")
    if not exponent > 0:
        raise KdtoolError(f"--zipf-exponent must be > 0, got {exponent}")


class ZipfLabelSmoothing(Target):
    """CE plus ``weight``·KL(Zipf target ‖ non-target prediction)."""

    name = "zipf"

    def __init__(self, weight: float = 1.0, exponent: float = 1.0) -> None:
        super().__init__()
        check_zipf_options(weight, exponent)
        self.weight = float(weight)
        self.exponent = float(exponent)

    def forward(self, logits, labels, inputs=None):
        logits = logits.float()
        on_label = F.one_hot(labels, logits.shape[1]).bool()
        target = zipf_targets(logits, labels, self.exponent)
        # The label's entries are 0·(−inf) in both logs: replace them by 0 so they add nothing (and no NaN).
        log_rest = F.log_softmax(logits.masked_fill(on_label, float("-inf")), dim=1).masked_fill(on_label, 0.0)
        log_target = target.clamp_min(torch.finfo(target.dtype).tiny).log().masked_fill(on_label, 0.0)
        kl = (target * (log_target - log_rest)).sum(1).mean()
        return F.cross_entropy(logits, labels) + self.weight * kl

    def extra_repr(self) -> str:
        return f"weight={self.weight}, exponent={self.exponent}"
