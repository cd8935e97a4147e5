"""A run again, from its own folder: the command kind, resolved options and sources its ``config.json`` records,
with ``--set key=value`` changes (``kdtool rerun``).

A source file (a teacher's weights, a Q artifact, a prior) must still be the file the run read: its SHA-256 is
checked against the one recorded. An option the run left to its default rule (``--milestones`` from
``--epochs``, LLS-ST's α from its Q, ...) follows that rule again, so ``--set epochs=20`` moves the default
milestones with it; without changes the rerun's options are exactly the recorded ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kdtool.config.options import config_options, option_suggestion
from kdtool.config.runconfig import TrainConfig, config_of_record
from kdtool.errors import KdtoolError
from kdtool.fileio import sha256_file
from kdtool.runs.folder import MODEL, RECORD_FACTS, RunDir, read_config

# Options --set does not change: the output folder is rerun's own --out.
_NOT_SETTABLE = {"out": "the new run's folder is rerun's --out"}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def parse_changes(items: Sequence[str]) -> dict[str, str]:
    """``["alpha=0.2", "lls-terms=forward-ce"]`` -> ``{"alpha": "0.2", "lls_terms": "forward-ce"}``."""
    changes: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().removeprefix("--").replace("-", "_")
        if not sep or not key:
            raise KdtoolError(f"--set takes KEY=VALUE (e.g. --set alpha=0.2), got {item!r}")
        if key in changes:
            raise KdtoolError(f"--set {key} is given twice")
        changes[key] = value.strip()
    return changes


def rerun_config(path: str | Path, out: str | Path, changes: Mapping[str, str]) -> tuple[TrainConfig, dict[str, str]]:
    """The config of the run folder ``path`` with ``changes`` applied and ``out`` as its folder (not yet
    resolved), and the changed options as given options (``{name: "--set name"}``) for
    :meth:`TrainConfig.check_given`. Unknown keys, bad values and changed source files are one-line errors;
    the run may be finished or interrupted (only its config.json is read)."""
    record = read_config(path)
    if record is None:
        RunDir.open(path)  # says what the path is instead: missing, a file, a folder of seed runs ...
        raise KdtoolError(f"{path} is not a kdtool run folder: rerun needs its config.json")
    if record.get("kind") == "import":
        raise KdtoolError(f"{path} is an imported network, not a trained run: import it again with kdtool import")
    cfg = config_of_record(record)
    for name in _defaulted(cfg):
        setattr(cfg, name, _default(cfg, name))
    for key, text in changes.items():
        setattr(cfg, key, parse_value(cfg, key, text))
    cfg.out = str(out)
    check_sources(record, cfg)
    return cfg, {key: f"--set {key}" for key in changes}


def parse_value(cfg: TrainConfig, key: str, text: str) -> Any:
    """``text`` as a value of the option ``key`` of ``cfg``, parsed as the option table types it for the command
    line (kdtool.config.options); else a one-line error."""
    if key in _NOT_SETTABLE:
        raise KdtoolError(f"--set {key}: {_NOT_SETTABLE[key]}")
    options = config_options(cfg.commands)
    if key not in options:
        what = "a fact about the run, not an option" if key in RECORD_FACTS else f"no {cfg.kind} option"
        raise KdtoolError(f"--set {key}: {what}{option_suggestion(key, options)}")
    option = options[key]
    if option.optional and text.lower() in ("none", ""):
        return None
    try:
        value = _parse(option.kind, text)
    except ValueError:
        raise KdtoolError(f"--set {key}={text}: {key} takes {_describe(option.kind)}") from None
    return option.to_config(value)  # a comma list as the command line parses it (its own error)


def _parse(kind: Any, text: str) -> Any:
    if kind is bool:
        if text.lower() not in (*_TRUE, *_FALSE):
            raise ValueError(text)
        return text.lower() in _TRUE
    return kind(text)  # int, float, str, Path


def _describe(kind: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number"}.get(kind, "text")


def _default(cfg: TrainConfig, name: str) -> Any:
    field = next(f for f in dataclasses.fields(cfg) if f.name == name)
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def _defaulted(cfg: TrainConfig) -> list[str]:
    """Options whose default (None or an empty list) ``resolve`` fills from other options, and whose recorded
    value is what that rule gives: the run left them to the rule, so a rerun with changes applies it again."""
    names = []
    for field in dataclasses.fields(cfg):
        if _default(cfg, field.name) not in (None, []):
            continue
        recorded = getattr(cfg, field.name)
        if recorded is None or recorded == []:
            continue
        # on any machine, whatever trackers are installed: no default rule depends on the device or the trackers
        trial = dataclasses.replace(cfg, **{field.name: _default(cfg, field.name), "device": "cpu", "log": "csv"})
        try:
            trial.resolve()
        except KdtoolError:
            continue
        if getattr(trial, field.name) == recorded:
            names.append(field.name)
    return names


def check_sources(record: Mapping[str, Any], cfg: TrainConfig) -> None:
    """Refuse (one line) when a source file the rerun reads again is not the one the run read: a teacher's
    ``model.safetensors``, a Q artifact, a prior or pretrained weights whose SHA-256 differs from
    ``config.json``'s (or is gone)."""
    teacher = record.get("teacher_run")
    if isinstance(teacher, dict) and teacher.get("model_sha256") and getattr(cfg, "teacher", None) == teacher["path"]:
        _check_file(Path(teacher["path"]) / MODEL, teacher["model_sha256"], "teacher run")
    for fact, option in (
        ("q_artifact", "substitute_q"),
        ("prior_artifact", "prior"),
        ("pretrained_weights", "pretrained"),
    ):
        source = record.get(fact)
        if isinstance(source, dict) and source.get("sha256") and getattr(cfg, option, None) == source["path"]:
            _check_file(Path(source["path"]), source["sha256"], fact.replace("_", " "))


def _check_file(path: Path, sha256: str, what: str) -> None:
    if not path.is_file():
        raise KdtoolError(f"cannot rerun: the {what}'s file {path} is gone")
    now = sha256_file(path)
    if now != sha256:
        raise KdtoolError(f"cannot rerun: {path} changed since the run read it (SHA-256 {sha256[:12]}... recorded, "
                          f"{now[:12]}... now); restore it, or --set another source")  # fmt: skip
