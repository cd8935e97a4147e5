"""Learnable Label Smoothing: a K×K matrix of logits ``Q`` learned together with the network.

For a sample of class y the target is ``t = (1-α)·e_y + α·softmax(Q[y])`` and the loss is the
symmetric KL divergence ``½[KL(t‖p) + KL(p‖t)]``, which expands into four terms::

    ½ [ -H(t)            + H(t, p)      - H(p)                + H(p, t) ]
        target_entropy     forward_ce     prediction_entropy    reverse_ce

The target is *not* detached: ``Q`` receives gradient through every term that contains ``t``.
The reverse cross-entropy is what gives ``Q`` a useful gradient, so dropping it (for the
paper's ablation) has to be asked for explicitly.

With all four terms the loss and its gradients are written out (:mod:`kdtool.losses.symkl`), a
dozen passes over the B×K tensors instead of autograd's thirty. Only the rows ``Q[y]`` of a batch's
labels get gradient. With ``q_update="sparse"`` the gradient says so (a sparse COO tensor of those
rows), and an optimizer that updates Q row-lazily (:class:`kdtool.optim.lazysgd.RowLazySGD`) trains the same
Q at a cost per step that grows with the rows touched instead of K².

On imbalanced data (kdtool's own; DESIGN.md, "Long-tailed and imbalanced data") ``correction`` changes one
part, with the class prior ``π`` of the training counts, and keeps the closed-form gradient exact:

- ``prior``: the smoothing part is ``softmax(Q[y] − τ·log π)``, dividing the frequency component out of Q
  (a constant shift of each row: the gradient formula is unchanged); ``learned_q`` returns ``Q − τ·log π``,
  the similarity the targets used;
- ``adjusted``: the loss is computed on ``p = softmax(z + τ·log π)`` (Menon et al., ICLR 2021), predictions
  on the raw ``z``;
- ``alpha``: a per-class ``α_y = α · n_y / n_max``: the rarer the class, the less of its label is smoothed away.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdtool.errors import KdtoolError, unknown_choice
from kdtool.losses.base import Target
from kdtool.losses.longtail import log_prior
from kdtool.losses.simple import check_unit_interval
from kdtool.losses.symkl import symmetric_kl_loss
from kdtool.q.maths import mixture_log_target

LLS_TERMS = ("target_entropy", "forward_ce", "prediction_entropy", "reverse_ce")
Q_UPDATES = ("dense", "sparse", "auto")
# ``auto`` updates Q row-sparsely from this many classes on (bench/lls_scaling.py: below it the dense
# update of a K×K matrix costs less than the bookkeeping of the sparse one)
SPARSE_Q_FROM = 1000
# --lls-correction (see the module docstring); the first two use τ
LLS_CORRECTIONS = ("none", "prior", "adjusted", "alpha")
TAU_CORRECTIONS = ("prior", "adjusted")


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


def resolve_q_update(mode: str, num_classes: int) -> str:
    """``dense`` or ``sparse`` for ``--q-update mode`` (``auto``: sparse from :data:`SPARSE_Q_FROM` classes)."""
    if mode not in Q_UPDATES:
        raise unknown_choice("--q-update", mode, Q_UPDATES)
    if mode == "auto":
        return "sparse" if num_classes >= SPARSE_Q_FROM else "dense"
    return mode


class LearnableLabelSmoothing(Target):
    """LLS loss module. Parameter ``q`` (K×K, zeros at start); ``forward`` returns the batch-mean loss.

    Example::

        lls = kdtool.LearnableLabelSmoothing(num_classes=10, alpha=0.1)
        optimizer = torch.optim.SGD([*model.parameters(), *lls.parameters()], lr=0.1, momentum=0.9)
        loss = lls(model(x), y); loss.backward(); optimizer.step()

    ``q_update``: ``dense`` (any optimizer), ``sparse`` (Q's gradient holds the batch's rows only:
    train Q in a ``row_lazy`` param group of :class:`kdtool.RowLazySGD` and set ``lls.lazy_rows =
    optimizer``), or ``auto`` (sparse from :data:`SPARSE_Q_FROM` classes). ``correction`` (with the
    training ``counts`` of each class and ``tau``): see the module docstring.
    """

    name = "lls"

    def __init__(
        self,
        num_classes: int,
        alpha: float = 0.1,
        terms: str | Iterable[str] = "all",
        q_update: str = "dense",
        correction: str = "none",
        counts: Sequence[int] | torch.Tensor | None = None,
        tau: float = 1.0,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise KdtoolError(f"LLS needs at least 2 classes, got {num_classes}")
        self.alpha = check_unit_interval("alpha", alpha)
        self.terms = parse_lls_terms(terms)
        self.q_update = resolve_q_update(q_update, num_classes)
        self.row_sparse = self.q_update == "sparse"
        self.q = nn.Parameter(torch.zeros(num_classes, num_classes))
        self.correction = correction
        if correction not in LLS_CORRECTIONS:
            raise KdtoolError(f"unknown LLS correction {correction!r}: choose one of {', '.join(LLS_CORRECTIONS)}")
        shift = None
        if correction != "none":
            if counts is None:
                raise KdtoolError(f"the LLS correction {correction!r} needs the training count of each class")
            shift = tau * log_prior(counts)
        # prior: added to Q's rows; adjusted: added to the logits; alpha: α_y = α·n_y/n_max
        self.register_buffer("row_shift", -shift if correction == "prior" else None, persistent=False)
        self.register_buffer("logit_shift", shift if correction == "adjusted" else None, persistent=False)
        alphas = None
        if correction == "alpha":
            n = torch.as_tensor(counts, dtype=torch.float64)
            alphas = (self.alpha * n / n.max()).float()
        self.register_buffer("alphas", alphas, persistent=False)

    def _alpha(self, labels: torch.Tensor) -> float | torch.Tensor:
        """α, or with the ``alpha`` correction each sample's α_y (B×1)."""
        return self.alpha if self.alphas is None else self.alphas[labels][:, None]

    def _shifted(self, rows: torch.Tensor) -> torch.Tensor:
        return rows if self.row_shift is None else rows + self.row_shift

    def _adjusted(self, logits: torch.Tensor) -> torch.Tensor:
        return logits if self.logit_shift is None else logits.float() + self.logit_shift

    def log_targets(self, labels: torch.Tensor) -> torch.Tensor:
        """``log t`` for each label (B×K), differentiable w.r.t. ``q``."""
        rows = _RowsOf.apply(self.q, labels, self._rows(labels)) if self.row_sparse else self.q[labels]
        return mixture_log_target(self._shifted(rows), labels, self._alpha(labels))

    def _rows(self, labels: torch.Tensor) -> torch.Tensor:
        """The values of ``q[labels]``, brought up to date first where an optimizer updates Q lazily."""
        if self.lazy_rows is None:
            return torch.index_select(self.q.detach(), 0, labels)
        return self.lazy_rows.rows(self.q, labels)

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """The soft targets ``t`` for each label (B×K)."""
        return self.log_targets(labels).exp()

    def term_values(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each of the four terms per sample (B), before the ½ factor."""
        log_p = F.log_softmax(self._adjusted(logits).float(), dim=1)
        log_t = self.log_targets(labels)
        p, t = log_p.exp(), log_t.exp()
        return {
            "target_entropy": (t * log_t).sum(1),  # -H(t)
            "forward_ce": -(t * log_p).sum(1),  # H(t, p)
            "prediction_entropy": (p * log_p).sum(1),  # -H(p)
            "reverse_ce": -(p * log_t).sum(1),  # H(p, t)
        }

    def forward(self, logits, labels, inputs=None):
        if self.terms == LLS_TERMS:  # the four terms together: ½·Σ (t − p)(log t − log p), gradient in closed form
            rows = self._shifted(self._rows(labels))
            return symmetric_kl_loss(self._adjusted(logits), self.q, rows, labels, self._alpha(labels),
                                     self.row_sparse)  # fmt: skip
        values = self.term_values(logits, labels)
        return 0.5 * torch.stack([values[name] for name in self.terms]).sum(0).mean()

    def learned_q(self) -> torch.Tensor:
        """Q's logits as the targets use them (with the ``prior`` correction: ``Q − τ·log π``)."""
        self._sync()
        return self._shifted(self.q.detach())

    def state_dict(self, *args, **kwargs):
        self._sync()  # checkpoints and model-selection copies hold every row up to date
        return super().state_dict(*args, **kwargs)

    def _sync(self) -> None:
        if self.lazy_rows is not None:
            self.lazy_rows.sync(self.q)

    def extra_repr(self) -> str:
        return (f"num_classes={self.q.shape[0]}, alpha={self.alpha}, terms={','.join(self.terms)}, "
                f"q_update={self.q_update}, correction={self.correction}")  # fmt: skip


class _RowsOf(torch.autograd.Function):
    """``rows`` (the values of ``q[labels]``) as a function of ``q`` whose gradient is row-sparse."""

    @staticmethod
    def forward(ctx, q, labels, rows):
        ctx.save_for_backward(labels)
        ctx.shape = q.shape
        return rows.view_as(rows)

    @staticmethod
    def backward(ctx, grad):
        (labels,) = ctx.saved_tensors
        return torch.sparse_coo_tensor(labels[None], grad, ctx.shape, check_invariants=False), None, None
