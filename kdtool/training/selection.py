"""Honest model selection: choose the weights a run keeps by validation metrics, never by test ones.

``last`` keeps the final epoch; ``best-val-loss`` / ``best-val-acc`` / ``best-val-f1`` keep the epoch
with the lowest validation NLL / highest validation accuracy / highest validation macro-F1 (for
imbalanced classes such as GoEmotions'), the earliest on ties. Early stopping ends training after
``patience`` epochs without a new lowest validation NLL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

_CRITERIA = {"best-val-loss": ("val_nll", min), "best-val-acc": ("val_acc", max), "best-val-f1": ("val_macro_f1", max)}


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
            if self.best_value is None or better(row[key], self.best_value) != self.best_value:
                self.best_value, self.selected_epoch = row[key], epoch
                self.best_state = _cpu_copy(weights)
        if "val_nll" in row:
            if self.best_loss is None or row["val_nll"] < self.best_loss:
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
