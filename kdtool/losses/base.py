"""The interface every training method implements.

A method is a :class:`Target`: an ``nn.Module`` that turns a batch's logits and labels (and, for
methods that need them, the batch's inputs) into the scalar loss to minimise. It may own
parameters (LLS's ``Q``); the engine puts them in the same optimizer as the network. Methods
that depend on the epoch override :meth:`on_epoch_start` or :meth:`on_epoch_end`. The engine knows
nothing else.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn


class LazyRows(Protocol):
    """What updates a method's row-sparse parameters lazily (:class:`kdtool.optim.lazysgd.RowLazySGD`)."""

    def rows(self, param: nn.Parameter, index: torch.Tensor) -> torch.Tensor:
        """The rows ``index`` of ``param`` brought up to date, as a new tensor."""
        ...

    def sync(self, param: nn.Parameter | None = None) -> None:
        """Every row of ``param`` up to date."""
        ...


class Target(nn.Module):
    """Base class of all methods. Subclasses set ``name`` and implement :meth:`forward`."""

    name: str = ""
    # Buffers summed over all processes (torchrun) before on_epoch_end, e.g. OLS's per-class sums.
    epoch_accumulators: tuple[str, ...] = ()  # buffer names (dotted for a wrapped method's)
    # True when the method's parameters get row-sparse gradients (LLS's Q with sparse updates): the engine
    # then updates them row-lazily and sets ``lazy_rows``, through which the method reads them.
    row_sparse: bool = False
    lazy_rows: LazyRows | None = None

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """Mean loss over the batch. ``inputs`` is the exact (augmented) batch the model saw."""
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> None:
        """Called before every training epoch (0-based; after a resume, first with the epoch it resumes at)."""

    def on_epoch_end(self, epoch: int) -> None:
        """Called once after every training epoch; stateless methods do nothing."""

    def learned_q(self) -> torch.Tensor | None:
        """The K×K logits of a class-similarity matrix learned during training, if any."""
        return None
