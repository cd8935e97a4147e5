"""End-of-epoch checkpoints for ``--resume``: written atomically, read without unpickling objects.

A checkpoint holds the trainer's state (model, method state such as LLS's Q or OLS's soft labels,
optimizer, scheduler), the number of finished epochs, the metrics rows so far, the model-selection
state (best epoch and its weights) and the global RNG states. The data order needs no state: each
epoch's shuffling and augmentation are seeded by ``(seed, epoch)``. Loading uses
``torch.load(weights_only=True)``, which accepts only tensors and plain containers, so a checkpoint
can never run code.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from kdtool.errors import KdtoolError
from kdtool.fileio import atomic_write
from kdtool.runs.folder import CHECKPOINT_DIR, LAST_CHECKPOINT, checkpoint_path


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run_path: str | Path, trainer_state: dict, epochs_done: int, rows: list[dict], selection: dict
) -> None:
    """Write ``checkpoint/last.pt`` atomically (temporary file, fsync, rename)."""
    path = checkpoint_path(run_path)
    path.parent.mkdir(exist_ok=True)
    payload = {"trainer": trainer_state, "epochs_done": epochs_done, "rows": rows, "rng": rng_state(),
               "selection": selection}  # fmt: skip
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(run_path: str | Path, map_location: torch.device | str = "cpu") -> dict:
    path = checkpoint_path(run_path)
    if not path.is_file():
        missing = f"{CHECKPOINT_DIR}/{LAST_CHECKPOINT}"
        raise KdtoolError(f"{run_path} has no checkpoint to resume from ({missing} is missing)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # any unreadable or non-weights content is a bad checkpoint
        raise KdtoolError(f"checkpoint {path} is unreadable: {str(exc).splitlines()[0]}") from exc
