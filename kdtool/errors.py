"""The exceptions the command line turns into one line and an exit code (no traceback)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path


class KdtoolError(ValueError):
    """A user-facing error: the CLI prints its message on one line and exits with code 2."""


def _spelling(name: str) -> str:
    """A name as a typo may spell it: case, ``_`` for ``-`` and a leading ``--`` do not matter."""
    return name.lower().replace("_", "-").lstrip("-")


def _abbreviates(short: str, name: str) -> bool:
    """``fmnist`` abbreviates ``fashion-mnist``: its first letter, then an ending of it (3 letters or more)."""
    return len(short) >= 4 and short != name and short[0] == name[0] and name.endswith(short[1:])


def close_names(value: str, names: Iterable[str], n: int = 2) -> list[str]:
    """The ``names`` a user probably meant by ``value``: one spelled alike up to case and ``_``/``-``, else
    those it abbreviates and the closest by difflib's ratio (at most ``n``; placeholders like ``text:PATH``
    aside)."""
    spelled = {_spelling(name): name for name in names if ":" not in name}
    typed = _spelling(value)
    if typed in spelled:
        return [spelled[typed]]
    abbreviated = [s for s in spelled if _abbreviates(typed, s)]
    ratios = {s: difflib.SequenceMatcher(None, typed, s).ratio() for s in spelled}
    best = max(ratios.values(), default=0.0)
    # only the closest: lenet is lenet5, not also alexnet (a ratio 0.08 lower)
    close = sorted((s for s, r in ratios.items() if r >= max(0.6, best - 0.05)), key=lambda s: (ratios[s], s),
                   reverse=True)  # fmt: skip
    return [spelled[s] for s in dict.fromkeys(abbreviated + close)][:n]


def did_you_mean(value: str, names: Iterable[str]) -> str:
    """`` (did you mean a or b?)`` for the close ``names`` of ``value``, or nothing when none is close."""
    close = close_names(value, names)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def unknown_choice(what: str, value: str, choices: Sequence[str], listed: str | None = None) -> KdtoolError:
    """The error of a value not among ``choices``: ``unknown --schedule 'cosin' (did you mean cosine?): choose
    one of ...``; ``listed`` replaces the comma list of ``choices`` where the choices read otherwise."""
    listed = ", ".join(choices) if listed is None else listed
    return KdtoolError(f"unknown {what} {value!r}{did_you_mean(value, choices)}: choose one of {listed}")


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
    """Training stopped because its loss became non-finite or exploded (exit 3); the last finite epoch's
    checkpoint is kept.

    ``record`` is what ``config.json`` keeps under ``diverged`` (epoch, step, lr, loss, and ``first_loss``, the
    run's first step's, for a finite loss that exploded); ``message`` is the
    one line the command prints.
    """

    def __init__(self, message: str, record: dict | None = None) -> None:
        self.record = record or {}
        super().__init__(message)


def divergence_line(record: dict, where: str | Path | None = None) -> str:
    """``epoch 7 diverged: training loss is nan at step 812 (lr 0.4); the last finite checkpoint is epoch 6``
    (``is 6.922e+05 (the first step's was 7.68)`` for a loss that exploded)."""
    epoch = int(record["epoch"])
    kept = f"the last finite checkpoint is epoch {epoch - 1}" if epoch > 1 else "no epoch finished before it"
    where_in_run = f"at step {record['step']} (lr {record['lr']:.4g})"
    loss = record["loss"]
    if "first_loss" in record:
        loss += f" (the first step's was {record['first_loss']:.3g})"
    line = f"epoch {epoch} diverged: training loss is {loss} {where_in_run}; {kept}"
    return line + (f" ({where})" if where is not None else "")
