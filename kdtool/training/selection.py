"""Honest model selection: choose the weights a run keeps by validation metrics, never by test ones.

``last`` keeps the final epoch; ``best-val-loss`` / ``best-val-acc`` / ``best-val-f1`` /
``best-val-balanced-acc`` keep the epoch with the lowest validation NLL / highest validation accuracy /
highest validation macro-F1 / highest validation balanced accuracy (the last two for imbalanced classes
such as GoEmotions'; balanced accuracy is measured on imbalanced training data only), the earliest on
ties. A non-finite value (a diverged epoch) is
never selected and never counts as a new lowest NLL. Early stopping ends training after ``patience``
epochs without a new lowest validation NLL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

# criterion -> (metrics.csv column, whether a value is better than the best so far)
_CRITERIA = {"best-val-loss": ("val_nll", lambda new, best: new < best),
             "best-val-acc": ("val_acc", lambda new, best: new > best),
             "best-val-f1": ("val_macro_f1", lambda new, best: new > best),
             "best-val-balanced-acc": ("val_balanced_acc", lambda new, best: new > best)}  # fmt: skip


def _improves(value: float, best: float | None, better) -> bool:
    """Whether ``value`` becomes the new best: finite, and the first finite one or strictly better."""
    return math.isfinite(value) and (best is None or better(value, best))


def _cpu_copy(state: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.detach().to("cpu", copy=True) if torch.is_tensor(v) else _cpu_copy(v) if isinstance(v, dict) else v)
            for k, v in state.items()}  # fmt: skip


@dataclass
class ModelSelector:
    """Tracks the selected epoch (1-based), a copy of its weights, and the early-stopping count."""

    criterion: str = "last"
    patience: int = 0
    selected_epoch: int = 0
    best_value: float | None = None
    best_loss: float | None = None
    stale_epochs: int = 0
    best_state: dict[str, Any] | None = field(default=None, repr=False)

    def update(self, row: dict[str, float], weights: dict[str, Any]) -> None:
        """Account for a finished epoch's ``row``; ``weights`` is the model/method state after it."""
        epoch = int(row["epoch"])
        if self.criterion == "last":
            self.selected_epoch = epoch
        else:
            key, better = _CRITERIA[self.criterion]
            if _improves(row[key], self.best_value, better):
                self.best_value, self.selected_epoch = row[key], epoch
                self.best_state = _cpu_copy(weights)
        if "val_nll" in row:
            if _improves(row["val_nll"], self.best_loss, _CRITERIA["best-val-loss"][1]):
                self.best_loss, self.stale_epochs = row["val_nll"], 0
            else:
                self.stale_epochs += 1

    def should_stop(self) -> bool:
        return self.patience > 0 and self.stale_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        keys = ("selected_epoch", "best_value", "best_loss", "stale_epochs", "best_state")
        return {k: getattr(self, k) for k in keys}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
