"""Experiment trackers a run reports to while it trains, selected by ``--log`` (a comma list).

``csv`` (the run folder's ``metrics.csv``) is always on; ``tensorboard``, ``mlflow`` and ``wandb`` each
need their optional package (``pip install "kdtool[NAME]"``), checked when the options resolve, before
any work. Every tracker implements :class:`Tracker`: start, scalars per epoch, an image, finish.

:class:`Trackers` drives the chosen ones for :func:`kdtool.workflows.pipeline.fit`, on rank 0 only. A tracker that
fails (a server gone mid-run) is reported once and dropped: training never stops for a tracker. What a
tracker needs to continue the same logged run after ``--resume`` (MLflow's run id, W&B's id) is kept in
the run folder's ``trackers.json``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdtool.errors import KdtoolError
from kdtool.fileio import atomic_write_json, files_below, folders_below, record_written
from kdtool.redact import redact, redact_values
from kdtool.runs.folder import TRACKER_DIRS, TRACKING

# --log name -> the package its tracker needs (the tracker itself is kdtool.trackers.<name>_log); csv needs none
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
LOG_CHOICES = ("csv", *TRACKER_PACKAGES)


def parse_log(spec: str) -> tuple[str, ...]:
    """``--log`` as the trackers it names, in a fixed order, ``csv`` always first."""
    names = {name.strip() for name in spec.split(",") if name.strip()}
    unknown = sorted(names - set(LOG_CHOICES))
    if unknown:
        raise KdtoolError(f"unknown --log {unknown[0]!r}: choose a comma list of {', '.join(LOG_CHOICES)}")
    return tuple(name for name in LOG_CHOICES if name == "csv" or name in names)


def check_installed(names: tuple[str, ...]) -> None:
    """Refuse (one line) a tracker whose package is not installed; nothing is imported."""
    for name in names:
        if name in TRACKER_PACKAGES and importlib.util.find_spec(TRACKER_PACKAGES[name]) is None:
            raise KdtoolError(f"--log {name} needs the {TRACKER_PACKAGES[name]} package: "
                              f'pip install "kdtool[{name}]"')  # fmt: skip


@dataclass(frozen=True)
class RunInfo:
    """What a tracker is told about the run it reports: folder, kind, resolved options, and, on a resumed
    run, the epochs already logged and the ``state`` the tracker returned when it started the run."""

    path: Path
    kind: str
    options: Mapping[str, Any]
    epochs_done: int = 0
    state: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def resumed(self) -> bool:
        return self.epochs_done > 0


class Tracker:
    """One experiment tracker. Steps are epochs (1-based); the final images come at the last epoch's step."""

    name = ""

    def start(self, run: RunInfo) -> dict[str, Any]:
        """Open (or, for a resumed run, reopen) the logged run; returns what reopening it later needs."""
        raise NotImplementedError

    def log_scalars(self, values: Mapping[str, float], step: int) -> None:
        raise NotImplementedError

    def log_image(self, tag: str, png: bytes, step: int) -> None:
        raise NotImplementedError

    def finish(self, run_path: Path, completed: bool) -> None:
        """Close the logged run: ``completed`` after the last epoch, not after an interruption or a crash."""
        raise NotImplementedError


def make_tracker(name: str, options: Mapping[str, Any]) -> Tracker:
    """The tracker ``name`` (its package is imported only now), configured from the run's options."""
    module = importlib.import_module(f"kdtool.trackers.{name}_log")
    return module.make(options)


class Trackers:
    """The trackers of one run, each guarded: the first failure of one is reported through ``warn`` (once)
    and that tracker is dropped, so the run goes on with the others."""

    def __init__(self, warn: Callable[[str], None], run_path: Path | None = None) -> None:
        self.active: list[Tracker] = []
        self.warn = warn
        self.run_path = run_path
        # files in the tracker folders before the trackers start: a user's are never recorded as kdtool's
        self.before = set(self._tracker_files())

    @classmethod
    def open(cls, names: tuple[str, ...], run: RunInfo, warn: Callable[[str], None]) -> Trackers:
        """Start the trackers ``names`` for ``run``; what each needs to be reopened goes to ``trackers.json``.

        Each tracker is configured from ``run.options`` as given and records them with credentials removed.
        """
        trackers, saved, state = cls(warn, run.path), read_state(run.path), {}
        shown = redact_values(run.options)[0]  # what trackers record: no credentials (the tracker itself gets them)
        for name in (n for n in names if n in TRACKER_PACKAGES):
            info = RunInfo(run.path, run.kind, shown, run.epochs_done, saved.get(name, {}))

            def begin(name: str = name, info: RunInfo = info) -> tuple[Tracker, dict[str, Any]]:
                tracker = make_tracker(name, run.options)
                return tracker, tracker.start(info)

            started = trackers._guarded(name, begin)
            if started is not None:
                trackers.active.append(started[0])
                state[name] = started[1]
        if state:
            atomic_write_json(run.path / TRACKING, {**saved, **state})
        return trackers

    def log_scalars(self, values: Mapping[str, float], step: int) -> None:
        self._each(lambda t: t.log_scalars(values, step))
        self._record_files()

    def log_image(self, tag: str, png: Callable[[], bytes], step: int) -> None:
        """Log the picture ``png()``, drawn only if some tracker is still active."""
        if self.active:
            picture = png()
            self._each(lambda t: t.log_image(tag, picture, step))

    def finish(self, run_path: Path, completed: bool) -> None:
        self._each(lambda t: t.finish(run_path, completed))
        self.active = []
        self._record_files()

    def _tracker_files(self) -> list[Path]:
        if self.run_path is None:
            return []
        folders = [self.run_path / name for name in TRACKER_DIRS if (self.run_path / name).is_dir()]
        return [folder / name for folder in folders for name in (*files_below(folder), *folders_below(folder))]

    def _record_files(self) -> None:
        """Record what the trackers wrote in their folders (event files, W&B's run files) as kdtool's own."""
        record_written(*(path for path in self._tracker_files() if path not in self.before))

    def _each(self, action: Callable[[Tracker], None]) -> None:
        for tracker in list(self.active):
            if self._guarded(tracker.name, lambda t=tracker: (action(t), True)) is None:
                self.active.remove(tracker)

    def _guarded(self, name: str, action: Callable[[], Any]) -> Any:
        """``action()``, or None after reporting its failure."""
        try:
            return action()
        except Exception as exc:  # a tracker never stops training: report it once and go on without it
            self.warn(redact(f"warning: --log {name} failed ({type(exc).__name__}: {exc}); the run goes on without it"))
            return None


def read_state(run_path: Path) -> dict[str, Any]:
    """``trackers.json`` of a run folder (empty when there is none or it is unreadable)."""
    try:
        state = json.loads((run_path / TRACKING).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return state if isinstance(state, dict) else {}


def option_text(value: Any) -> str:
    """An option value as trackers show it: lists as comma lists, None as ``none``."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "none" if value is None else str(value)
