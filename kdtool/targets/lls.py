"""Learnable Label Smoothing: a K×K matrix of logits ``Q`` learned together with the network.

For a sample of class y the target is ``t = (1-α)·e_y + α·softmax(Q[y])`` and the loss is the
symmetric KL divergence ``½[KL(t‖p) + KL(p‖t)]``, which expands into four terms::

    ½ [ -H(t)            + H(t, p)      - H(p)                + H(p, t) ]
        target_entropy     forward_ce     prediction_entropy    reverse_ce

The target is *not* detached: ``Q`` receives gradient through every term that contains ``t``.
The reverse cross-entropy is what gives ``Q`` a useful gradient, so dropping it (for the
paper's ablation) has to be asked for explicitly.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from kdtool.errors import KdtoolError
from kdtool.qmath import mixture_log_target
from kdtool.targets.base import Target
from kdtool.targets.simple import check_unit_interval

LLS_TERMS = ("target_entropy", "forward_ce", "prediction_entropy", "reverse_ce")


def parse_lls_terms(spec: str | Iterable[str]) -> tuple[str, ...]:
    """``"all"`` or a comma list of term names (``-`` or ``_``) -> canonical tuple in LLS_TERMS order."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip().replace("-", "_") for n in names if n.strip()]
    if names == ["all"]:
        return LLS_TERMS
    unknown = [n for n in names if n not in LLS_TERMS]
    if unknown or not names:
        valid = ", ".join(t.replace("_", "-") for t in LLS_TERMS)
        raise KdtoolError(f"unknown LLS term {unknown[0] if unknown else '(none)'!r}: use 'all' or some of {valid}")
    return tuple(t for t in LLS_TERMS if t in names)


class LearnableLabelSmoothing(Target):
    """LLS loss module. Parameter ``q`` (K×K, zeros at start); ``forward`` returns the batch-mean loss.

    Example::

        lls = kdtool.LearnableLabelSmoothing(num_classes=10, alpha=0.1)
        optimizer = torch.optim.SGD([*model.parameters(), *lls.parameters()], lr=0.1, momentum=0.9)
        loss = lls(model(x), y); loss.backward(); optimizer.step()
    """

    name = "lls"

    def __init__(self, num_classes: int, alpha: float = 0.1, terms: str | Iterable[str] = "all") -> None:
        super().__init__()
        if num_classes < 2:
            raise KdtoolError(f"LLS needs at least 2 classes, got {num_classes}")
        self.alpha = check_unit_interval("alpha", alpha)
        self.terms = parse_lls_terms(terms)
        self.q = nn.Parameter(torch.zeros(num_classes, num_classes))

    def log_targets(self, labels: torch.Tensor) -> torch.Tensor:
        """``log t`` for each label (B×K), differentiable w.r.t. ``q``."""
        return mixture_log_target(self.q[labels], labels, self.alpha)

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """The soft targets ``t`` for each label (B×K)."""
        return self.log_targets(labels).exp()

    def term_values(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each of the four terms per sample (B), before the ½ factor."""
        log_p = F.log_softmax(logits.float(), dim=1)
        log_t = self.log_targets(labels)
        p, t = log_p.exp(), log_t.exp()
        return {
            "target_entropy": (t * log_t).sum(1),  # -H(t)
            "forward_ce": -(t * log_p).sum(1),  # H(t, p)
            "prediction_entropy": (p * log_p).sum(1),  # -H(p)
            "reverse_ce": -(p * log_t).sum(1),  # H(p, t)
        }

    def forward(self, logits, labels, inputs=None):
        if self.terms == LLS_TERMS:
            # the four terms together are ½·Σ (t - p)(log t - log p): one pass over B×K instead of four
            log_p = F.log_softmax(logits.float(), dim=1)
            log_t = self.log_targets(labels)
            return 0.5 * ((log_t.exp() - log_p.exp()) * (log_t - log_p)).sum(1).mean()
        values = self.term_values(logits, labels)
        return 0.5 * torch.stack([values[name] for name in self.terms]).sum(0).mean()

    def learned_q(self) -> torch.Tensor:
        return self.q.detach()

    def extra_repr(self) -> str:
        return f"num_classes={self.q.shape[0]}, alpha={self.alpha}, terms={','.join(self.terms)}"
