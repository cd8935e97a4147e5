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
