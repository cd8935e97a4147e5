"""Run folders: the unit every command writes and reads.

Layout: ``config.json`` (resolved options, versions, seed), ``metrics.csv`` (a row per epoch),
``model.safetensors`` (weights), ``q.safetensors`` (when a Q was learned or used). Every file
is written atomically.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.metadata
import io
import json
import os
import platform
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from kdtool.errors import KdtoolError
from kdtool.fileio import atomic_write, atomic_write_json, atomic_write_text

CONFIG = "config.json"
METRICS = "metrics.csv"
MODEL = "model.safetensors"
Q = "q.safetensors"


def check_output_dir(path: str | os.PathLike, force: bool) -> Path:
    """Fail early (before any work) if ``path`` cannot become a fresh run folder."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise KdtoolError(f"--out {path} exists and is not a folder")
        if any(path.iterdir()):
            if not force:
                raise KdtoolError(f"run folder {path} already exists: pass --force to replace it")
            if not (path / CONFIG).is_file():
                raise KdtoolError(f"--out {path} is a non-empty folder that is not a kdtool run; refusing --force")
    parent = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise KdtoolError(f"cannot write --out {path}: {parent} is not writable")
    return path


# Options that may differ between a run and its resumption: they do not change the result.
_RESUME_FREE = {"device", "eval_batch_size", "out"}


def check_resumable(path: str | os.PathLike, options: dict[str, Any], force: bool) -> None:
    """Refuse ``--resume`` unless ``path`` is a run of the same options with a checkpoint."""
    from kdtool.checkpoint import checkpoint_path

    path = Path(path)
    if force:
        raise KdtoolError("--resume continues a run and --force replaces it: pass only one of them")
    if not (path / CONFIG).is_file():
        raise KdtoolError(f"nothing to resume: {path} is not a kdtool run folder")
    if not checkpoint_path(path).is_file():
        raise KdtoolError(f"{path} has no checkpoint to resume from; start it again with --force")
    recorded = RunDir(path).config()
    for key, value in options.items():
        if key not in _RESUME_FREE and recorded.get(key) != value:
            flag = "--" + key.replace("_", "-")
            raise KdtoolError(f"cannot resume {path}: {flag} was {recorded.get(key)!r}, now {value!r}")


class RunInterrupted(Exception):
    """Training stopped by Ctrl-C or SIGTERM after ``epochs_done`` complete, checkpointed epochs."""

    def __init__(self, path: Path, epochs_done: int) -> None:
        self.path, self.epochs_done = Path(path), epochs_done
        hint = (
            f"the last complete checkpoint is epoch {epochs_done}; resume with the same command plus --resume"
            if epochs_done
            else "no epoch completed, so there is nothing to resume"
        )
        super().__init__(f"interrupted: {hint} ({path})")


@contextlib.contextmanager
def interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while training, so both stop at a safe point with the same message."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def versions() -> dict[str, str]:
    from kdtool import __version__

    return {
        "kdtool": __version__,
        "torch": torch.__version__,
        "torchvision": importlib.metadata.version("torchvision"),  # importing it would take seconds
        "python": platform.python_version(),
    }


class RunDir:
    """A run folder on disk."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | os.PathLike, force: bool) -> RunDir:
        path = check_output_dir(path, force)
        if path.exists() and force:
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunDir:
        """An existing, complete run folder (config and weights present)."""
        run = cls(path)
        if not run.path.is_dir():
            raise KdtoolError(f"run folder {run.path} does not exist")
        for name in (CONFIG, MODEL):
            if not (run.path / name).is_file():
                raise KdtoolError(f"{run.path} is not a complete kdtool run folder: {name} is missing")
        return run

    # -- writing ---------------------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        record = {**config, "versions": versions(), "command": " ".join(sys.argv)}
        atomic_write_json(self.path / CONFIG, record)

    def update_config(self, facts: dict[str, Any]) -> None:
        """Add result facts (e.g. the selected epoch) to an existing ``config.json``."""
        atomic_write_json(self.path / CONFIG, {**self.config(), **facts})

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path / METRICS, buffer.getvalue())

    def save_model(self, model: torch.nn.Module) -> None:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        atomic_write(self.path / MODEL, lambda tmp: save_file(state, str(tmp)))

    # -- reading ---------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / CONFIG).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise KdtoolError(f"{self.path / CONFIG} is unreadable: {exc}") from exc

    def training_config(self) -> dict[str, Any]:
        """``config.json`` of a training run; anything else is a one-line error."""
        record = self.config()
        if "dataset_info" not in record or "model" not in record:
            raise KdtoolError(f"{self.path / CONFIG} does not describe a kdtool training run")
        return record

    def metrics(self) -> list[dict[str, str]]:
        with open(self.path / METRICS, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    def load_weights(self, model: torch.nn.Module) -> torch.nn.Module:
        model.load_state_dict(load_file(str(self.path / MODEL)))
        return model
