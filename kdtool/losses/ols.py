"""Online Label Smoothing (Zhang et al. 2021, "Delving Deep into Label Smoothing").

Each class y has a soft label ``S[y]``: the mean softmax of the training samples of class y that
the network classified correctly during the previous epoch. Before the first epoch ends every row
is uniform; a class with no correctly classified sample in an epoch keeps its row. The loss is
``½ CE(e_y, p) + ½ CE(S[y], p)``.

The per-epoch sums live in buffers (``sums``, ``counts``) that the engine sums over all processes
of a distributed run before :meth:`on_epoch_end`; the update happens in that hook, which the
engine always calls, so no caller can forget it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdtool.errors import KdtoolError
from kdtool.losses.base import Target


class OnlineLabelSmoothing(Target):
    """OLS loss. Buffers: ``soft`` (K×K, the labels in use), ``sums`` and ``counts`` (this epoch's)."""

    name = "ols"
    epoch_accumulators = ("sums", "counts")

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise KdtoolError(f"OLS needs at least 2 classes, got {num_classes}")
        self.register_buffer("soft", torch.full((num_classes, num_classes), 1.0 / num_classes))
        self.register_buffer("sums", torch.zeros(num_classes, num_classes))
        self.register_buffer("counts", torch.zeros(num_classes))

    def forward(self, logits, labels, inputs=None):
        log_p = F.log_softmax(logits.float(), dim=1)
        if self.training:
            self.accumulate(log_p.detach(), labels)
        hard = F.nll_loss(log_p, labels, reduction="none")
        soft = -(self.soft[labels] * log_p).sum(1)
        return 0.5 * (hard + soft).mean()

    @torch.no_grad()
    def accumulate(self, log_p: torch.Tensor, labels: torch.Tensor) -> None:
        """Add the softmax of the correctly classified samples to their class's running sum."""
        correct = (log_p.argmax(1) == labels).float()
        self.sums.index_add_(0, labels, log_p.exp() * correct[:, None])
        self.counts.index_add_(0, labels, correct)

    @torch.no_grad()
    def on_epoch_end(self, epoch: int) -> None:
        seen = self.counts > 0
        means = self.sums / self.counts.clamp_min(1.0)[:, None]
        self.soft.copy_(torch.where(seen[:, None], means, self.soft))
        self.sums.zero_()
        self.counts.zero_()

    def extra_repr(self) -> str:
        return f"num_classes={self.soft.shape[0]}"
