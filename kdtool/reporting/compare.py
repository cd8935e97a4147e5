"""Compare run folders: read them with pandas, summarise each run, then mean ± std per group of runs.

A group is the set of runs that share the values of the ``group_by`` config keys (by default the
method, ``smoothing``, and every option that changes results in which the runs differ), so with one run per
seed the table reports the mean and the spread over seeds.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from kdtool.config.options import RESULT_FREE, changes_result
from kdtool.errors import KdtoolError, close_names
from kdtool.reporting.display import Column
from kdtool.reporting.plots import DYNAMICS_METRICS, GroupCurve, is_percent
from kdtool.runs.folder import CONFIG, METRICS, MODEL, RECORD_FACTS

DEFAULT_GROUP_BY = ("smoothing",)
DEFAULT_METRICS = ("test_acc", "test_nll", "test_ece")
EPOCH_LEGEND = ("selected: the epoch whose weights a run kept (metrics.csv's selected column); last: the last "
                "epoch it trained; best: its best epoch")  # fmt: skip
# Config keys that differ between runs of one group without changing what is compared.
_INCIDENTAL = {"seed", "command", "device_used", "world_size", *RESULT_FREE}
_INCIDENTAL_PREFIXES = ("versions.", "teacher_run.path", "q_artifact.path", "prior_artifact.path")


def higher_is_better(metric: str) -> bool:
    """Accuracy-like metrics (``*acc``, ``*f1``) improve upwards; losses, NLL and ECE downwards."""
    return metric.endswith(("acc", "f1"))


def _natural_key(path: Path) -> list:
    """Sort ``seed2`` before ``seed10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def find_runs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The run folders named by ``paths``, in the given order, each once.

    A path is a run folder (it holds ``config.json``) or a folder with run folders below it, such as
    the ``seed0``, ``seed1``, ... of a ``--seeds`` run; those are taken in natural order.
    """
    if not paths:
        raise KdtoolError("no runs given: name run folders or folders of run folders")
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / CONFIG).is_file():
            found.append(path)
            continue
        if path.is_file():
            raise KdtoolError(f"{path} is a file, not a run folder: name folders holding config.json")
        if not path.is_dir():
            raise KdtoolError(f"{path} is not a run folder: it does not exist")
        runs = sorted((p.parent for p in path.rglob(CONFIG)), key=_natural_key)
        if not runs:
            raise KdtoolError(f"{path} is not a run folder: no config.json in it or in any folder below it")
        found.extend(runs)
    first: dict[Path, Path] = {}
    for path in found:  # a run named twice (say, by itself and by its parent folder) counts once
        first.setdefault(path.resolve(), path)
    return list(first.values())


def _flat_config(path: Path) -> dict:
    """``config.json`` as one flat row: nested keys joined by dots, lists as comma lists."""
    try:
        record = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise KdtoolError(f"{path / CONFIG} is unreadable: {exc}") from exc
    row = pd.json_normalize(record).iloc[0].to_dict()
    return {k: ",".join(map(str, v)) if isinstance(v, list) else v for k, v in row.items()}


@dataclass
class RunSet:
    """Finished runs read from disk.

    ``configs``: one row per run (index: run path), the flattened config. ``epochs``: one row per
    run and epoch, the run's ``metrics.csv`` plus a ``run`` column. ``unfinished``: runs left out
    because they have no weights yet and fewer epochs than their config asks for (running or
    interrupted; a run stopped early has its weights). ``diverged``: runs left out because their
    training loss became non-finite or exploded (they have no result).
    """

    configs: pd.DataFrame
    epochs: pd.DataFrame
    unfinished: list[str]
    diverged: list[str] = field(default_factory=list)

    def left_out(self) -> list[str]:
        """The lines that say which runs were left out and why (none when every run counted)."""
        return [f"left out {len(runs)} {why} runs: {', '.join(runs)}"
                for why, runs in (("unfinished", self.unfinished), ("diverged", self.diverged)) if runs]  # fmt: skip


def load_runs(paths: Sequence[Path]) -> RunSet:
    """Read the config and metrics of each run folder; unfinished and diverged runs are set aside."""
    configs, epochs, unfinished, diverged = {}, [], [], []
    for path in paths:
        config = _flat_config(path)
        metrics_file = path / METRICS
        frame = pd.read_csv(metrics_file) if metrics_file.is_file() else pd.DataFrame()
        if config.get("status") == "diverged":
            diverged.append(str(path))
            continue
        if not (path / MODEL).is_file() and len(frame) < int(config.get("epochs", 1)):
            unfinished.append(str(path))
            continue
        configs[str(path)] = config
        epochs.append(frame.assign(run=str(path)))
    if not configs:
        left = "; ".join(RunSet(pd.DataFrame(), pd.DataFrame(), unfinished, diverged).left_out())
        raise KdtoolError(f"no finished run among {len(paths)} run folders ({left})")
    return RunSet(pd.DataFrame.from_dict(configs, orient="index"), pd.concat(epochs, ignore_index=True), unfinished,
                  diverged)  # fmt: skip


def differing_options(runs: RunSet) -> list[str]:
    """The options (config keys that are no facts about a run) that change results, as ``--seeds`` and
    ``--resume`` tell them apart (:func:`~kdtool.config.options.changes_result`), in which runs of one method
    differ (an option of one method alone, such as LLS's alpha, does not split the others); the seed aside,
    by name."""
    options = [key for key in runs.configs.columns
               if "." not in key and key not in RECORD_FACTS and key not in ("seed", *DEFAULT_GROUP_BY)
               and any(changes_result(key, row) for row in runs.configs.to_dict("records"))]  # fmt: skip
    if not options or not set(DEFAULT_GROUP_BY) <= set(runs.configs.columns):
        return []
    shown = group_labels(runs, [*DEFAULT_GROUP_BY, *options])  # a missing key and a null read alike: not applied
    per_method = shown.groupby(list(DEFAULT_GROUP_BY))[options].nunique()
    return sorted(key for key in options if (per_method[key] > 1).any())


def check_group_keys(runs: RunSet, keys: Sequence[str] | None) -> list[str]:
    """``--group-by`` keys as config columns (``lls-terms`` means ``lls_terms``); unknown keys are an error.

    None: the method (``smoothing``) and every option that changes results in which the runs differ
    (:func:`differing_options`), so that a group's spread is only that of seeds.
    """
    if keys is None:
        keys = [*DEFAULT_GROUP_BY, *differing_options(runs)]
    columns = [key.strip().replace("-", "_") for key in keys if key.strip()]
    if not columns:
        raise KdtoolError("--group-by needs at least one config key, e.g. smoothing")
    for key in columns:
        if key not in runs.configs.columns:
            close = close_names(key, list(runs.configs.columns), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else "; the keys are those of a run's config.json"
            raise KdtoolError(f"unknown --group-by key {key!r}{hint}")
    return columns


def check_metrics(runs: RunSet, metrics: Sequence[str]) -> list[str]:
    """``--metric`` names as metrics.csv columns present in every run; anything else is an error."""
    names = [m.strip() for m in metrics if m.strip()]
    if not names:
        raise KdtoolError("--metric needs at least one metrics.csv column, e.g. test_acc")
    for name in names:
        missing = runs.epochs.loc[runs.epochs[name].isna(), "run"] if name in runs.epochs else runs.epochs["run"]
        if len(missing):
            known = [c for c in runs.epochs.columns if c not in ("run", "epoch")]
            raise KdtoolError(f"metric {name!r} is not in {missing.iloc[0]}/{METRICS}; its columns: {', '.join(known)}")
    return names


# Added to the default --metric where every run has them (runs on imbalanced training data)
LONG_TAIL_METRICS = ("test_balanced_acc", "test_many_acc", "test_medium_acc", "test_few_acc", "test_macro_f1")


def with_long_tail_metrics(runs: RunSet, metrics: Sequence[str]) -> list[str]:
    """``metrics`` and the long-tail ones every run measured (balanced and many/medium/few-shot accuracy,
    macro-F1): the default columns of runs on imbalanced data."""
    measured = [m for m in LONG_TAIL_METRICS if m in runs.epochs and runs.epochs[m].notna().all()]
    if "test_balanced_acc" not in measured:
        return list(metrics)
    return [*metrics, *(m for m in measured if m not in metrics)]


def last_epochs(runs: RunSet) -> pd.DataFrame:
    """Per run (index: run path), the metrics row of the last epoch it trained."""
    return runs.epochs.sort_values(["run", "epoch"]).groupby("run").tail(1).set_index("run")


def kept_epochs(runs: RunSet) -> pd.DataFrame:
    """Per run (index: run path), the metrics row of the epoch whose weights the run kept: the one
    marked ``selected`` (when the run selected an epoch), otherwise the last."""
    ordered = runs.epochs.sort_values(["run", "epoch"])
    last = ordered.groupby("run").tail(1)
    if "selected" in ordered:
        chosen = ordered[ordered["selected"].fillna(0).astype(float) > 0].groupby("run").tail(1)
        last = pd.concat([chosen, last[~last["run"].isin(chosen["run"])]])
    return last.set_index("run")


def run_summary(runs: RunSet, metrics: Sequence[str]) -> pd.DataFrame:
    """One row per run: ``selected_epoch`` (the epoch whose weights the run kept, see :func:`kept_epochs`)
    and ``last_epoch``; per metric m ``selected_<m>`` and ``last_<m>`` (m at those two epochs) and
    ``best_<m>`` (best epoch, accuracy-like m only); ``epoch_seconds`` (mean wall time of an epoch,
    training and evaluation). Values are as in metrics.csv (accuracies as fractions)."""
    by_run = runs.epochs.groupby("run", sort=False)
    kept, last = kept_epochs(runs), last_epochs(runs)
    summary = pd.DataFrame(index=runs.configs.index)
    summary["selected_epoch"] = kept["epoch"]
    summary["last_epoch"] = last["epoch"]
    for metric in metrics:
        summary[f"selected_{metric}"] = kept[metric]
        summary[f"last_{metric}"] = last[metric]
        if higher_is_better(metric):
            summary[f"best_{metric}"] = by_run[metric].max()
    if "seconds" in runs.epochs:
        summary["epoch_seconds"] = by_run["seconds"].mean()
    return summary


def group_labels(runs: RunSet, group_by: Sequence[str]) -> pd.DataFrame:
    """The group-by config values of each run as strings (a missing value reads ``-``)."""
    return runs.configs[list(group_by)].map(lambda v: "-" if v is None or (isinstance(v, float) and math.isnan(v))
                                            else f"{v:g}" if isinstance(v, float) else str(v))  # fmt: skip


def group_summary(runs: RunSet, group_by: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Per group (in order of first appearance): the group's keys, ``n`` runs, and for every
    per-run value ``<value>_mean`` and ``<value>_std`` (sample standard deviation, NaN for one run)."""
    per_run = run_summary(runs, metrics)
    values = list(per_run.columns)
    frame = group_labels(runs, group_by).join(per_run)
    grouped = frame.groupby(list(group_by), sort=False)
    table = grouped.size().rename("n").to_frame()
    for value in values:
        table[f"{value}_mean"] = grouped[value].mean()
        table[f"{value}_std"] = grouped[value].std()
    return table.reset_index()


def mixed_options(runs: RunSet, group_by: Sequence[str]) -> dict[str, list[str]]:
    """Config keys (beyond seed, output folder, device ...) whose values differ inside a group, per group.

    A non-empty answer means a group's spread is not only seed-to-seed variation.
    """
    keys = [c for c in runs.configs.columns
            if c not in _INCIDENTAL and not c.startswith(_INCIDENTAL_PREFIXES) and c not in group_by]  # fmt: skip
    mixed = {}
    shown = group_labels(runs, keys)  # as text, a missing value as "-" (astype(str) may keep NaN, unseen by nunique)
    for name, members in groups(runs, group_by).items():
        rows = shown.loc[members]
        differing = [k for k in keys if rows[k].nunique() > 1]
        if differing:
            mixed[name] = differing
    return mixed


def group_name(label: str | tuple, group_by: Sequence[str]) -> str:
    """A group's display name: the value of its first key, then ``key=value`` of the others that apply to it,
    joined by `` · `` (``kd · logit_standardize=True``)."""
    values = label if isinstance(label, tuple) else (label,)
    named = [f"{key}={value}" for key, value in zip(group_by[1:], values[1:], strict=True) if value != "-"]
    return " · ".join([str(values[0]), *named])


def groups(runs: RunSet, group_by: Sequence[str]) -> dict[str, list[str]]:
    """Each group's display name and its runs, groups in order of first appearance."""
    labels = group_labels(runs, group_by).groupby(list(group_by), sort=False)
    return {group_name(label, group_by): list(rows.index) for label, rows in labels}


def curves(runs: RunSet, group_by: Sequence[str], metric: str) -> dict[str, pd.DataFrame]:
    """Per group: ``metric`` per epoch over the group's runs, columns ``mean``, ``min``, ``max``; a group whose runs
    lack the column (an older run's learning rate is "lr") has none."""
    labels = group_labels(runs, group_by)
    frame = runs.epochs.join(labels, on="run")
    result = {}
    for label, rows in frame.groupby(list(group_by), sort=False):
        if rows[metric].notna().any():
            result[group_name(label, group_by)] = rows.groupby("epoch")[metric].agg(["mean", "min", "max"])
    return result


def best_runs(runs: RunSet, group_by: Sequence[str], metric: str) -> dict[str, str]:
    """Per group: the run with the best ``metric`` at its selected epoch (highest, or lowest for a loss-like
    metric)."""
    final = run_summary(runs, [metric])[f"selected_{metric}"]
    frame = group_labels(runs, group_by).join(final)
    pick = "idxmax" if higher_is_better(metric) else "idxmin"
    return {group_name(label, group_by): getattr(rows[f"selected_{metric}"], pick)()
            for label, rows in frame.groupby(list(group_by), sort=False)}  # fmt: skip


def calibrated_groups(
    runs: RunSet, group_by: Sequence[str], metric: str, device: str, note: Callable[[str], None]
) -> list[GroupCurve]:
    """Per group: its curve of ``metric`` and the calibration of its best run by ``metric`` (see
    :func:`best_runs`), that run's network evaluated on its test set on ``device``. A best run without
    weights, or whose network kdtool cannot rebuild (``kdtool.fit``'s), is left out of the calibration, and
    ``note`` says so."""
    from kdtool.runs.folder import RunDir
    from kdtool.training.metrics import calibration_bins
    from kdtool.training.rundata import predict_run
    from kdtool.training.runmodel import NetworkUnavailable

    members = groups(runs, group_by)
    best = best_runs(runs, group_by, metric)
    result = []
    for name, curve in curves(runs, group_by, metric).items():
        calibration, missing = None, f"{best[name]} has no {MODEL}"
        try:
            if (Path(best[name]) / MODEL).is_file():
                logits, labels, _ = predict_run(RunDir(best[name]), "test", device, "the reliability diagram")
                calibration = calibration_bins(logits, labels)
        except NetworkUnavailable as exc:
            missing = f"{best[name]}: {exc.what}"
        if calibration is None:
            note(f"{missing}: group {name} is left out of the reliability diagram")
        result.append(GroupCurve(name, len(members[name]), curve, best[name], calibration))
    return result


def _split(value_column: str) -> tuple[str, str]:
    """``selected_test_acc`` -> (``selected``, ``test_acc``); ``selected_epoch`` -> (``selected``, ``epoch``)."""
    if value_column == "epoch_seconds":
        return "", value_column
    which, metric = value_column.split("_", 1)
    return which, metric


def _decimals(value_column: str) -> int:
    """Digits after the point a value is shown with, in its display unit."""
    metric = _split(value_column)[1]
    if metric in ("epoch", "epoch_seconds"):
        return 1
    return 2 if is_percent(metric) else 4


def _scale(value_column: str) -> float:
    return 100.0 if is_percent(_split(value_column)[1]) else 1.0


def _number(value_column: str, value: float) -> str:
    text = f"{_scale(value_column) * value:.{_decimals(value_column)}f}"
    return text.removesuffix(".0") if _split(value_column)[1] == "epoch" else text


def _merged(table: pd.DataFrame) -> bool:
    """Every run kept its last epoch: the selected and last columns hold the same numbers. (Per run the
    selected epoch is at most the last, so equal means over every group mean equal epochs in every run.)"""
    return bool((table["selected_epoch_mean"] == table["last_epoch_mean"]).all())


def _header(value_column: str, merged: bool) -> str:
    which, metric = _split(value_column)
    if metric == "epoch_seconds":
        return "s/epoch"
    if which in ("selected", "last"):
        which = "selected = last" if merged else which
    unit = " %" if is_percent(metric) else ""
    return f"epoch {which}" if metric == "epoch" else f"{metric}{unit} {which}"


def _shown_values(table: pd.DataFrame) -> list[str]:
    """The per-run values a table shows, most important first: the first metric at the selected epoch,
    at the last, its best; the epochs; the other metrics; seconds per epoch. When every run kept its
    last epoch, the ``last_`` columns are left out (the ``selected`` ones say ``selected = last``)."""
    values = [c.removesuffix("_mean") for c in table.columns if c.endswith("_mean")]
    merged = _merged(table)
    metrics = [v.removeprefix("selected_") for v in values if v.startswith("selected_") and v != "selected_epoch"]
    order = []
    for index, metric in enumerate(metrics):
        order += [f"selected_{metric}", f"last_{metric}", f"best_{metric}"]
        if index == 0:
            order += ["selected_epoch", "last_epoch"]
    order.append("epoch_seconds")
    return [v for v in order if v in values and not (merged and v.startswith("last_"))]


def _position(value: str) -> int:
    """Where a value's column stands in a table: each metric selected, last, best; then the epochs."""
    return 1 if value.endswith("_epoch") else 2 if value == "epoch_seconds" else 0


def display_table(table: pd.DataFrame, group_by: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Headers and text rows of a :func:`group_summary` table, each value as ``mean ± std``.

    Columns name the epoch they report: ``selected`` (the epoch whose weights a run kept), ``last`` (the
    last epoch it trained), ``best`` (its best epoch); ``selected = last`` when every run kept its last
    epoch. Accuracies are in percent; a group of one run shows its value alone.
    """
    headers, rows, _ = _table_parts(table, group_by)
    return headers, rows


def display_columns(table: pd.DataFrame, group_by: Sequence[str]) -> list[Column]:
    """The columns of :func:`display_table` for a terminal: the group keys, ``n`` and the first metric at
    the selected epoch are always shown; the others are hidden, least important first, when it is narrow."""
    return _table_parts(table, group_by)[2]


def _table_parts(table: pd.DataFrame, group_by: Sequence[str]) -> tuple[list[str], list[list[str]], list[Column]]:
    merged = _merged(table)
    importance = _shown_values(table)
    values = sorted(importance, key=_position)  # stable: metrics keep their order within a position
    headers = [*group_by, "n", *(_header(v, merged) for v in values)]
    columns = [Column(key, justify="left") for key in group_by] + [Column("n")]
    columns += [Column(_header(v, merged), drop=None if importance.index(v) == 0 else len(importance)
                       - importance.index(v)) for v in values]  # fmt: skip
    rows = []
    for _, row in table.iterrows():
        cells = [str(row[key]) for key in group_by] + [str(int(row["n"]))]
        for value in values:
            mean, std = row[f"{value}_mean"], row[f"{value}_std"]
            text = _number(value, mean)
            same = math.isnan(std) or (value.endswith("_epoch") and std == 0)  # every run at the same epoch
            cells.append(text if same else f"{text} ± {_number(value, std)}")
        rows.append(cells)
    return headers, rows, columns


def csv_table(table: pd.DataFrame) -> pd.DataFrame:
    """A :func:`group_summary` table in the units and precision of the displayed table: accuracies in
    percent (their columns renamed ``..._pct_mean`` / ``..._pct_std``), each value rounded to the digits
    the table shows."""
    out = table.copy()
    renames = {}
    for column in table.columns:
        if not column.endswith(("_mean", "_std")):
            continue
        value, stat = column.rsplit("_", 1)
        out[column] = (table[column] * _scale(value)).round(_decimals(value))
        if _scale(value) != 1.0:
            renames[column] = f"{value}_pct_{stat}"
    return out.rename(columns=renames)


def to_markdown(headers: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int) -> str:
    """A GitHub-flavoured markdown table; the first ``text_columns`` columns are left-aligned."""
    rule = [":--" if i < text_columns else "--:" for i in range(len(headers))]
    lines = [headers, rule, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines) + "\n"


def method_labels(runs: RunSet) -> pd.Series:
    """Each run's method: its ``smoothing``, with the prior artifact's name for ``prior`` runs."""
    configs = runs.configs
    prior = configs["prior"] if "prior" in configs else pd.Series(None, index=configs.index)
    return pd.Series(
        [f"prior:{Path(str(p)).name.split('.')[0]}" if m == "prior" and isinstance(p, str) else str(m)
         for m, p in zip(configs["smoothing"], prior, strict=True)],
        index=configs.index,
    )  # fmt: skip


def dynamics_curves(runs: RunSet) -> dict[float, dict[str, dict[str, pd.DataFrame]]]:
    """The PLS study's curves: per learning rate, per method, per dynamics metric, the mean/min/max per
    epoch over the method's runs (its seeds)."""
    missing = [m for m in DYNAMICS_METRICS if m not in runs.epochs]
    if missing or "smoothing" not in runs.configs:
        raise KdtoolError(
            f"these runs record no {', '.join(missing or ['smoothing'])}: they predate the dynamics metrics"
        )
    # metrics.csv of older runs has its own per-epoch "lr" column: the run's peak lr gets another name
    labels = pd.DataFrame({"peak_lr": runs.configs["lr"].astype(float), "method": method_labels(runs)})
    frame = runs.epochs.join(labels, on="run")
    result: dict[float, dict[str, dict[str, pd.DataFrame]]] = {}
    for (lr, method), rows in frame.groupby(["peak_lr", "method"], sort=True):
        per_epoch = rows.groupby("epoch")
        result.setdefault(float(lr), {})[method] = {
            m: per_epoch[m].agg(["mean", "min", "max"]) for m in DYNAMICS_METRICS
        }
    return dict(sorted(result.items(), reverse=True))
