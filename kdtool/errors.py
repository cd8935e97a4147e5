"""The exceptions the command line turns into one line and an exit code (no traceback)."""

from __future__ import annotations

from pathlib import Path


class KdtoolError(ValueError):
    """A user-facing error: the CLI prints its message on one line and exits with code 2."""


class RunInterrupted(Exception):
    """Training stopped by Ctrl-C or SIGTERM after ``epochs_done`` complete, checkpointed epochs (exit 130)."""

    def __init__(self, path: str | Path, epochs_done: int) -> None:
        self.path, self.epochs_done = Path(path), epochs_done
        hint = (
            f"the last complete checkpoint is epoch {epochs_done}; resume with the same command plus --resume"
            if epochs_done
            else "no epoch completed, so there is nothing to resume"
        )
        super().__init__(f"interrupted: {hint} ({path})")


class RunDiverged(Exception):
    """Training stopped because its loss became non-finite (exit 3); the last finite epoch's checkpoint is kept.

    ``record`` is what ``config.json`` keeps under ``diverged`` (epoch, step, lr, loss); ``message`` is the
    one line the command prints.
    """

    def __init__(self, message: str, record: dict | None = None) -> None:
        self.record = record or {}
        super().__init__(message)


def divergence_line(record: dict, where: str | Path | None = None) -> str:
    """``epoch 7 diverged: training loss is nan at step 812 (lr 0.4); the last finite checkpoint is epoch 6``."""
    epoch = int(record["epoch"])
    kept = f"the last finite checkpoint is epoch {epoch - 1}" if epoch > 1 else "no epoch finished before it"
    where_in_run = f"at step {record['step']} (lr {record['lr']:.4g})"
    line = f"epoch {epoch} diverged: training loss is {record['loss']} {where_in_run}; {kept}"
    return line + (f" ({where})" if where is not None else "")
