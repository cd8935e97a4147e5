"""Run folders: the unit every command writes and reads.

Layout: ``config.json`` (resolved options, versions, seed), ``metrics.csv`` (a row per epoch),
``model.safetensors`` (weights), ``q.safetensors`` (when a Q was learned or used), ``vocab.json``
(text runs), ``checkpoint/`` (for ``--resume``), and what ``--log`` trackers keep there (``trackers.json``,
``tensorboard/``, ``wandb/``). Every file kdtool itself writes is written atomically.

A folder is a kdtool run only if its ``config.json`` is kdtool's own (it parses and records the
run kind and the kdtool version). Replacing a run (``--force``) removes only the files its manifest
records (:mod:`kdtool.fileio`: every file kdtool wrote there, at any depth), and is refused when
anything else is in the folder: kdtool never deletes a file it did not write.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.metadata
import io
import json
import os
import platform
import signal
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdtool.errors import KdtoolError, RunInterrupted
from kdtool.fileio import (
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    check_can_create,
    foreign_files,
    own_folder,
    recorded_files,
    remove_recorded,
)
from kdtool.redact import redact_values

CONFIG = "config.json"
METRICS = "metrics.csv"
MODEL = "model.safetensors"
Q = "q.safetensors"
VOCAB = "vocab.json"
CHECKPOINT_DIR = "checkpoint"
LAST_CHECKPOINT = "last.pt"
# What the experiment trackers of --log keep in a run folder (kdtool.trackers): how to reopen their logged
# run on --resume, TensorBoard's event files, W&B's local run files.
TRACKING = "trackers.json"
TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"
TRACKER_DIRS = (TENSORBOARD_DIR, WANDB_DIR)

# What `config.json` says a folder is: one kind per command that writes a run folder.
RUN_KINDS = ("train-teacher", "distill", "import")
# Keys of config.json that are facts about a run (its data, sources, results, provenance), not options.
RECORD_FACTS = frozenset({"kind", "versions", "command", "dataset_info", "device_used", "world_size",
                          "selected_epoch", "epochs_run", "teacher_run", "teacher_cache_file", "q_artifact",
                          "prior_artifact", "kept_classes", "model_input", "pretrained_weights",
                          "imported_weights", "data_loader", "status", "diverged", "redacted",
                          "kd_preset_set", "kd_preset_overridden"})  # fmt: skip


def checkpoint_path(run_path: str | os.PathLike) -> Path:
    """Where a run keeps the checkpoint of its last complete epoch."""
    return Path(run_path) / CHECKPOINT_DIR / LAST_CHECKPOINT


def read_config(path: str | os.PathLike) -> dict[str, Any] | None:
    """``config.json`` of the folder ``path`` if it is kdtool's, else None (missing, unreadable or foreign)."""
    try:
        record = json.loads((Path(path) / CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict):
        return None
    versions = record.get("versions")
    if not isinstance(versions, dict) or not isinstance(versions.get("kdtool"), str):
        return None
    # runs written before the kind was recorded are recognised by their dataset facts
    if record.get("kind", "train-teacher" if "dataset_info" in record else None) not in RUN_KINDS:
        return None
    return record


def is_run(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding kdtool's own ``config.json``."""
    return read_config(path) is not None


FOREIGN_NAMED = 3  # foreign files a refusal names (then "and N more")


def unreplaceable(path: str | os.PathLike) -> str | None:
    """Why ``--force`` would refuse to replace the folder ``path`` (one line), or None where it would replace it:
    a kdtool run folder holding only files kdtool recorded writing."""
    path = Path(path)
    if not is_run(path):
        what = "its config.json is not kdtool's" if (path / CONFIG).exists() else "it has no kdtool config.json"
        return f"{path} is not a kdtool run folder ({what}): --force replaces only kdtool runs; choose another --out"
    if recorded_files(path) is None:
        return (f"{path} has no record of the files kdtool wrote in it (an older kdtool made it): --force cannot "
                f"tell them from yours; remove it yourself or pick another --out")  # fmt: skip
    foreign = foreign_files(path)
    if not foreign:
        return None
    named = ", ".join(map(repr, foreign[:FOREIGN_NAMED]))
    if len(foreign) > FOREIGN_NAMED:
        named += f" and {len(foreign) - FOREIGN_NAMED} more"
    elif len(foreign) > 1:
        named = " and ".join(named.rsplit(", ", 1))
    them = "them" if len(foreign) > 1 else "it"
    return (f"{path} holds {named}, which kdtool did not write: --force would not remove {them}; move {them} away "
            f"or choose another --out")  # fmt: skip


def check_replaceable(path: str | os.PathLike) -> None:
    """Refuse (one line) unless ``path`` is a kdtool run folder holding only files kdtool recorded writing."""
    reason = unreplaceable(path)
    if reason is not None:
        raise KdtoolError(reason)


def clear_run(path: str | os.PathLike) -> None:
    """Remove the files kdtool wrote in the run folder ``path`` (after :func:`check_replaceable`)."""
    check_replaceable(path)
    remove_recorded(path)


def interrupted_after(path: str | os.PathLike) -> int | None:
    """Epochs completed by the interrupted run in ``path`` (None when it has no checkpoint)."""
    if not checkpoint_path(path).is_file():
        return None
    with contextlib.suppress(OSError, ValueError, TypeError):
        return len(list(csv.DictReader(io.StringIO((Path(path) / METRICS).read_text(encoding="utf-8")))))
    return 0


def diverged_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """Where the run in ``path`` diverged (``config.json``'s ``diverged``), or None for a run that did not."""
    record = read_config(path) or {}
    return record.get("diverged") if record.get("status") == "diverged" else None


def run_folders(path: str | os.PathLike) -> list[Path]:
    """The kdtool run folders directly inside ``path`` (e.g. the ``seed<N>`` folders of ``--seeds``), sorted."""
    return sorted(p for p in Path(path).iterdir() if p.is_dir() and is_run(p)) if Path(path).is_dir() else []


def q_artifact_path(path: str | os.PathLike) -> Path:
    """The Q artifact file ``path``, or the ``q.safetensors`` of the run folder given in its place."""
    path = Path(path)
    if not path.is_dir():
        return path
    if (path / Q).is_file():
        return path / Q
    with_q = [p for p in run_folders(path) if (p / Q).is_file()]
    if with_q:
        raise KdtoolError(f"{path} is a folder of runs, not a Q artifact: pass the Q of one of them, "
                          f"e.g. {with_q[0] / Q}")  # fmt: skip
    raise KdtoolError(f"{path} is a folder without q.safetensors, not a Q artifact")


def check_output_dir(path: str | os.PathLike, force: bool) -> Path:
    """Fail early (before any work) if ``path`` cannot become a fresh run folder."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise KdtoolError(f"--out {path} exists and is not a folder")
        if any(path.iterdir()):
            if force:
                check_replaceable(path)
            elif (done := interrupted_after(path)) is not None and not (path / MODEL).is_file():
                raise KdtoolError(f"{path} holds a run interrupted after epoch {done}: add --resume to continue it, "
                                  f"or --force to start it again")  # fmt: skip
            else:  # suggest --force only where it would replace the folder
                exists = f"run folder {path} already exists: pass --force to replace it"
                raise KdtoolError(unreplaceable(path) or exists)
    check_can_create(path / CONFIG, f"--out {path}")
    return path


def first_difference(recorded: Mapping[str, Any], requested: Mapping[str, Any],
                     defaults: Mapping[str, Any] | None = None) -> tuple[str, Any, Any] | None:  # fmt: skip
    """The first option of ``requested`` whose recorded value differs: ``(name, was, now)``, or None.

    ``recorded`` is a ``config.json``; ``requested`` the resolved options that make a run's result
    (:meth:`TrainConfig.result_options`: not the device, evaluation batch size, output folder, trackers ...).
    An option the record lacks was made by a kdtool without it, which behaved as its declared default
    (``defaults``, :meth:`TrainConfig.result_defaults`; None when not given): that value now is the same run,
    so a run still resumes after an upgrade.
    """
    missing = object()
    requested = redact_values(requested)[0]  # as config.json records them: without credentials
    for key, value in requested.items():
        was = recorded.get(key, missing)
        if was is missing and value == (defaults or {}).get(key):
            continue
        if was != value:
            return key, (None if was is missing else was), value
    return None


def describe_difference(difference: tuple[str, Any, Any]) -> str:
    """``--alpha 0.1, now 0.2``: an option as it was recorded and as it is requested."""
    key, was, now = difference
    flag = "the run kind" if key == "kind" else "--" + key.replace("_", "-")
    return f"{flag} {_shown(was)}, now {_shown(now)}"


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class RunPlan:
    """What to do with one run folder: ``train`` (afresh; ``replace`` an existing kdtool run first),
    ``resume`` (an interrupted run of the same options), ``skip`` (finished with the same options) or
    ``diverged`` (stopped with a non-finite or exploded loss, same options: skipped and listed as diverged)."""

    action: str
    replace: bool = False


def plan_run(path: str | os.PathLike, options: Mapping[str, Any], force: bool, resume: bool,
             reuse: bool = False, defaults: Mapping[str, Any] | None = None) -> RunPlan:  # fmt: skip
    """The one "same run?" decision for a run folder, taken before any work.

    ``options`` are the resolved options that make the requested run's result (``TrainConfig.result_options``),
    ``defaults`` their declared defaults (what a run recorded before an option existed stands for).
    ``resume``: the folder must be a run of the same options with a checkpoint (skipped when it is finished).
    ``force``: an existing kdtool run is replaced (only what kdtool wrote in it). ``reuse`` (``--seeds``,
    ``sweep``): a finished run of the same options is skipped, an interrupted one resumed, one that died before
    its first checkpoint restarted;
    a run of other options is refused, naming the first differing option.
    """
    path = Path(path)
    if force and resume:
        raise KdtoolError("--resume continues a run and --force replaces it: pass only one of them")
    exists = path.is_dir() and any(path.iterdir())
    if resume:
        return _plan_resume(path, options, defaults)
    if force:
        check_output_dir(path, force=True)
        return RunPlan("train", replace=exists)
    if reuse and exists and is_run(path):
        finished, interrupted = (path / MODEL).is_file(), checkpoint_path(path).is_file()
        diverged = diverged_record(path) is not None  # in its first epoch too, before any checkpoint
        if finished or interrupted or diverged:
            _check_same(path, options, defaults, f"{path} was trained with", "to retrain it")
            if diverged:
                return RunPlan("diverged")
            return RunPlan("skip" if finished else "resume")
        check_output_dir(path, force=True)  # died before its first checkpoint: start it again
        return RunPlan("train", replace=True)
    check_output_dir(path, force=False)
    return RunPlan("train")


def _plan_resume(path: Path, options: Mapping[str, Any], defaults: Mapping[str, Any] | None) -> RunPlan:
    """``--resume``: the run in ``path`` continued, or skipped when finished; refused unless it is a run of the
    same options with a checkpoint."""
    if not is_run(path):
        raise KdtoolError(f"nothing to resume: {path} is not a kdtool run folder")
    if (record := diverged_record(path)) is not None:
        raise KdtoolError(f"{path} diverged in epoch {record['epoch']}: the same options diverge again; pass "
                          f"--force to train it afresh (e.g. with a lower --lr)")  # fmt: skip
    _check_same(path, options, defaults, f"cannot resume {path}: it was trained with", "to start it afresh")
    if (path / MODEL).is_file():  # finished: nothing to resume
        return RunPlan("skip")
    if not checkpoint_path(path).is_file():
        raise KdtoolError(f"{path} has no checkpoint to resume from; start it again with --force")
    return RunPlan("resume")


def _check_same(path: Path, options: Mapping[str, Any], defaults: Mapping[str, Any] | None, what: str,
                fresh: str) -> None:  # fmt: skip
    difference = first_difference(read_config(path) or {}, options, defaults)
    if difference is not None:
        raise KdtoolError(f"{what} {describe_difference(difference)}: pass --force {fresh}, or choose another --out")


@contextlib.contextmanager
def stops_safely(path: str | os.PathLike) -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C during a run, and either one, wherever it lands (loading data, building
    the model), as :class:`RunInterrupted` with the epochs the run folder ``path`` has checkpointed.

    The training loop raises its own, exact RunInterrupted between epochs; this covers the rest."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        yield
    except KeyboardInterrupt:
        raise RunInterrupted(path, interrupted_after(path) or 0) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def versions() -> dict[str, str]:
    """The versions a run records (torchvision read from its metadata: importing it takes seconds)."""
    import torch  # loaded already by the run that records it

    from kdtool import __version__

    return {
        "kdtool": __version__,
        "torch": torch.__version__,
        "torchvision": importlib.metadata.version("torchvision"),
        "python": platform.python_version(),
    }


class RunDir:
    """A run folder on disk."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | os.PathLike, force: bool) -> RunDir:
        """A fresh run folder; with ``force`` an existing kdtool run there is cleared first."""
        path = check_output_dir(path, force)
        if path.is_dir() and force:
            clear_run(path)
        return cls(own_folder(path))

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunDir:
        """An existing, finished run folder (config and weights present); every other kind of path
        (a file of a run, a folder of seed runs, an interrupted run) is a one-line error saying what it is."""
        path = Path(path)
        if path.is_file():
            holder = f": pass the folder that holds it, {path.parent}" if is_run(path.parent) else ""
            raise KdtoolError(f"{path} is a file, not a run folder{holder}")
        if not path.is_dir():
            raise KdtoolError(f"run folder {path} does not exist")
        if not (path / CONFIG).is_file() and (group := run_folders(path)):
            shown = ", ".join(p.name for p in group[:3]) + (", ..." if len(group) > 3 else "")
            raise KdtoolError(f"{path} is a folder of runs ({shown}), not a run: pass one of them, e.g. {group[0]}")
        if (record := diverged_record(path)) is not None:
            raise KdtoolError(
                f"{path} diverged in epoch {record['epoch']} (training loss {record['loss']} at step "
                f"{record['step']}) and has no weights: train it again with --force and a lower --lr"
            )
        if (path / CONFIG).is_file() and not (path / MODEL).is_file() and (done := interrupted_after(path)):
            raise KdtoolError(f"{path} was interrupted after epoch {done} and has no weights yet: finish it with its "
                              f"command plus --resume")  # fmt: skip
        for name in (CONFIG, MODEL):
            if not (path / name).is_file():
                raise KdtoolError(f"{path} is not a complete kdtool run folder: {name} is missing")
        return cls(path)

    # -- writing ---------------------------------------------------------------------------
    def write_config(self, kind: str, options: dict[str, Any], facts: dict[str, Any]) -> None:
        """``config.json``: the run kind, its resolved options, facts about its data and sources, provenance."""
        if kind not in RUN_KINDS:
            raise ValueError(f"unknown run kind {kind!r}")
        record = {"kind": kind, **options, **facts, "versions": versions(), "command": " ".join(sys.argv)}
        record, redacted = redact_values(record)  # credentials in a URI never reach the disk
        atomic_write_json(self.path / CONFIG, {**record, **({"redacted": redacted} if redacted else {})})

    def update_config(self, facts: dict[str, Any]) -> None:
        """Add result facts (e.g. the selected epoch) to an existing ``config.json``."""
        atomic_write_json(self.path / CONFIG, {**self.config(), **facts})

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        buffer = io.StringIO()
        # every row's columns: a run resumed from an older kdtool's checkpoint has rows with other columns ("lr")
        writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(key for row in rows for key in row)))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path / METRICS, buffer.getvalue())

    def save_model(self, model: Any) -> None:
        """The weights of ``model`` (an ``nn.Module``) as ``model.safetensors``."""
        from safetensors.torch import save_file

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

    def load_weights(self, model: Any) -> Any:
        """Load ``model.safetensors`` into ``model`` (an ``nn.Module``) and return it."""
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(self.path / MODEL)))
        return model


def selected_row(rows: Iterable[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The metrics row of the epoch whose weights the run kept (the last one for older runs)."""
    rows = list(rows)
    return next((r for r in rows if int(float(r.get("selected", 0)))), rows[-1])
