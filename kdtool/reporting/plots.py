"""Pictures of runs: learning curves beside a reliability diagram (``compare --plot``), the training
dynamics (``compare --plot-dynamics``) and a confusion matrix (``evaluate``), and the style every
kdtool figure shares (the Q heatmap of qreport.py included):

- one colour per method or group in every figure, keyed by its name through a fixed palette
  (:func:`method_colours`), never by the order the runs were named in, with a marker and line style of its
  own (:func:`method_styles`);
- integer epoch ticks; accuracies, errors and confidences in percent, axes labelled with their unit;
- PNG, PDF or SVG by the file's extension (:func:`check_figure_path` refuses others before any work).

Like qreport.py, this draws on matplotlib's Agg canvas only (no pyplot global state), imported when
a picture is drawn, and writes each file atomically. It imports neither torch nor pandas.
"""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdtool.errors import KdtoolError
from kdtool.fileio import FIGURE_MARKER, atomic_write, check_output_file

if TYPE_CHECKING:
    import pandas as pd
    import torch

_ANNOTATE_MAX_CLASSES = 15  # small matrices get each cell's count written in it

FIGURE_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}

# Methods kdtool trains, each with its own colour in every figure: a colour-blind-safe qualitative palette, the
# eight of Okabe & Ito ("Color Universal Design", 2008), seven of Paul Tol's muted and bright schemes
# (https://personal.sron.nl/~pault/#sec:qualitative) and two picked to stay apart from them, so that every two are
# at least 23 CIELAB ΔE apart, and 16 for a deuteranope (tests/test_second_hour.py). onehot / ls / lls keep a
# blue / orange / green.
METHOD_COLOURS = {
    "onehot": "#0072B2",
    "ls": "#E69F00",
    "lls": "#009E73",
    "ols": "#D55E00",
    "tfkd-reg": "#CC79A7",
    "tfkd-self": "#56B4E9",
    "zipf": "#F0E442",
    "focal": "#000000",
    "prior": "#332288",
    "kd": "#882255",
    "lls-st": "#AA4499",
    "dkd": "#661100",
    "dist": "#DDCC77",
    "wttm": "#EE6677",
    "nkd": "#228833",
    "logit-adjust": "#991900",
    "label-aware": "#AC8539",
}
# Further colours, for other group names (alpha values, ablation terms, ...), picked by a hash of the name: the
# rest of Tol's muted and light schemes.
_EXTRA_COLOURS = ("#117733", "#88CCEE", "#999933", "#CC6677", "#44AA99", "#BBBBBB", "#EE8866", "#77AADD")
_PALETTE = (*METHOD_COLOURS.values(), *_EXTRA_COLOURS)
# Markers and line styles: by a name's place in the palette, so a method keeps them in every figure, and lines
# stay apart in print and without colour vision.
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h")
_LINE_STYLES = ("-", "--", "-.", ":")


@dataclass(frozen=True)
class LineStyle:
    """How one method or group is drawn in every figure: colour, marker and line style."""

    colour: str
    marker: str
    linestyle: str


def method_styles(names: Iterable[str]) -> dict[str, LineStyle]:
    """Each name's colour (:func:`method_colours`) with the marker and line style of that colour's place in the
    palette: as stable as the colour, and distinct for the thirteen methods kdtool knows."""
    styles = {}
    for name, colour in method_colours(names).items():
        place = _PALETTE.index(colour)
        styles[name] = LineStyle(colour, _MARKERS[place % len(_MARKERS)], _LINE_STYLES[place % len(_LINE_STYLES)])
    return styles


def method_colours(names: Iterable[str]) -> dict[str, str]:
    """A colour for each method or group name, the same in every figure whatever the order of ``names``.

    A method kdtool knows (``onehot``, ``ls``, ``lls``, ...) always gets its own colour; a name made of
    one (``prior:fmnist-semantic``, ``lls · 0.1``) gets that method's colour if no other name of the figure
    takes it; any other name a colour chosen by a hash of the name, moved to the next free colour of the
    palette when another name of the same figure holds it.
    """
    names = sorted(set(names))
    colours: dict[str, str] = {n: METHOD_COLOURS[n] for n in names if n in METHOD_COLOURS}
    for name in names:
        if name in colours:
            continue
        taken = set(colours.values())
        parts = [p for p in name.replace(":", " · ").split(" · ") if p in METHOD_COLOURS]
        preferred = [METHOD_COLOURS[p] for p in parts if METHOD_COLOURS[p] not in taken]
        if preferred:
            colours[name] = preferred[0]
            continue
        start = zlib.crc32(name.encode("utf-8")) % len(_PALETTE)
        free = [_PALETTE[(start + i) % len(_PALETTE)] for i in range(len(_PALETTE))]
        colours[name] = next((c for c in free if c not in taken), free[0])
    return colours


def figure_format(path: str | os.PathLike) -> str:
    """``png``, ``pdf`` or ``svg`` from the file's extension; any other extension is a one-line error."""
    suffix = Path(path).suffix.lower()
    if suffix not in FIGURE_FORMATS:
        raise KdtoolError(f"cannot draw {path}: a figure's file name must end in {', '.join(FIGURE_FORMATS)} "
                          f"(got {suffix or 'no extension'!r})")  # fmt: skip
    return FIGURE_FORMATS[suffix]


def check_figure_path(path: str | os.PathLike, force: bool) -> Path:
    """Before any work: the figure's format is known and the file can be written (``force`` replaces it)."""
    figure_format(path)
    return check_output_file(path, force)


def save_figure(fig, path: str | os.PathLike, rect: tuple[float, float, float, float] | None = None) -> None:
    """Lay ``fig`` out (within ``rect`` of the figure, if given) and write it atomically as PNG, PDF or SVG,
    as ``path``'s extension says."""
    data = figure_bytes(fig, figure_format(path), rect)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def figure_bytes(fig, kind: str = "png", rect: tuple[float, float, float, float] | None = None) -> bytes:
    """``fig`` laid out (within ``rect`` of the figure, if given) as a PNG, PDF or SVG file's bytes."""
    fig.tight_layout(rect=rect)
    buffer = io.BytesIO()
    # the marker by which kdtool knows its own figure (fileio.written_by_kdtool): --force replaces only those
    fig.savefig(buffer, format=kind, dpi=120, metadata={"Software" if kind == "png" else "Creator": FIGURE_MARKER})
    return buffer.getvalue()


def text_colour(rgba: tuple[float, ...]) -> str:
    """Black or white, whichever reads better on a cell of colour ``rgba`` (by its relative luminance)."""
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3])
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.179 else "white"


def integer_epochs(ax) -> None:
    """Epoch axes get whole-number ticks only."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


_METRIC_NAMES = {"acc": "accuracy", "macro_f1": "macro-F1", "nll": "NLL", "ece": "ECE", "loss": "loss"}
# Whole axis labels of the metrics.csv columns not named split_metric.
_LABELS = {
    "grad_norm": "gradient norm (mean over every 10th step)",
    "generalization_error": "|test error − train error| (% points)",
    "lr_mean": "mean learning rate of the epoch",
    "lr": "learning rate at the epoch's first step",
}


def is_percent(metric: str) -> bool:
    """Accuracies and the generalization error (a difference of accuracies) are in percent in every table,
    CSV and figure kdtool makes; F1, NLL, ECE and the rest as they are."""
    return metric.endswith("acc") or metric == "generalization_error"


def metric_label(metric: str) -> str:
    """An axis label with the unit: ``test_acc`` -> ``test accuracy (%)``, ``test_nll`` -> ``test NLL (nats)``."""
    if metric in _LABELS:
        return _LABELS[metric]
    split, _, name = metric.partition("_")
    words = f"{split} {_METRIC_NAMES.get(name, name)}" if name else metric
    unit = " (%)" if is_percent(metric) else " (nats)" if name in ("nll", "loss") else " (0–1)" if name in (
        "macro_f1", "ece") else ""  # fmt: skip
    return words + unit


@dataclass
class GroupCurve:
    """One group of runs as ``compare --plot`` draws it.

    ``curve``: index epoch, columns ``mean``, ``min``, ``max`` of the metric over the group's runs.
    ``calibration``: (count, summed confidence, summed hits) per confidence bin of the group's best
    run on its test set (see :func:`kdtool.training.metrics.calibration_bins`), or None when not drawn.
    """

    name: str
    runs: int
    curve: pd.DataFrame
    best_run: str
    calibration: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None


def _figure(width: float, height: float, columns: int = 1, rows: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, columns)


def plot_comparison(groups: list[GroupCurve], metric: str, path: str | os.PathLike, title: str = "") -> None:
    """Write :func:`comparison_figure` to ``path`` (PNG, PDF or SVG by its extension)."""
    save_figure(comparison_figure(groups, metric, title), path)


def comparison_figure(groups: list[GroupCurve], metric: str, title: str = ""):
    """Left: ``metric`` per epoch, a mean line and a min–max band per group. Right: a reliability
    diagram (accuracy against confidence per bin, both in %) of each group's best run. Each group has
    its colour of :func:`method_colours` in both panels."""
    fig, (curves, reliability) = _figure(13.0, 5.2, columns=2)
    scale = 100.0 if is_percent(metric) else 1.0
    styles = method_styles(g.name for g in groups)
    for group in groups:
        style = styles[group.name]
        epochs = group.curve.index.to_numpy()
        runs = f"{group.runs} run{'s' if group.runs != 1 else ''}"
        curves.plot(epochs, group.curve["mean"] * scale, color=style.colour, marker=style.marker, markersize=5,
                    linestyle=style.linestyle, label=f"{group.name} ({runs})")  # fmt: skip
        curves.fill_between(epochs, group.curve["min"] * scale, group.curve["max"] * scale, color=style.colour,
                            alpha=0.2)  # fmt: skip
    curves.set_xlabel("epoch")
    integer_epochs(curves)
    curves.set_ylabel(metric_label(metric))
    curves.set_title(title or f"{metric} per epoch: mean over runs, band = min to max")
    curves.grid(alpha=0.3)
    curves.legend()
    _draw_reliability(reliability, groups, styles)
    return fig


def reliability_figure(groups: list[GroupCurve], title: str = "") -> Any:
    """The reliability diagram of :func:`comparison_figure` alone (accuracy against confidence per bin, in %);
    ``title`` replaces the one of several groups' best runs (a one-run report's)."""
    fig, ax = _figure(6.4, 5.6)
    _draw_reliability(ax, groups, method_styles(g.name for g in groups), title)
    return fig


def _draw_reliability(ax, groups: list[GroupCurve], styles: dict[str, LineStyle], title: str = "") -> None:
    """Each group's best run, a line of its colour, marker and line style (readable without colour)."""
    for group in groups:
        if group.calibration is not None:
            count, confidence, hits = group.calibration
            seen = count > 0
            style = styles[group.name]
            ax.plot(100 * confidence[seen] / count[seen], 100 * hits[seen] / count[seen], marker=style.marker,
                    color=style.colour, linestyle=style.linestyle, label=f"{group.name}: {group.best_run}")  # fmt: skip
    ax.plot([0, 100], [0, 100], linestyle="--", color="grey", label="perfect calibration")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("confidence: mean max-probability of the bin (%)")
    ax.set_ylabel("accuracy of the bin (%)")
    ax.set_title(title or "reliability of each group's best run (test set, 15 bins)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")


# metrics.csv's learning rate: the mean over the epoch's steps; runs of earlier kdtool versions have the rate of
# the epoch's first step instead, as "lr".
LR_COLUMNS = ("lr_mean", "lr")
# Panels of :func:`curves_figure`: a title and the metrics.csv columns drawn in it.
CURVE_PANELS = (
    ("accuracy", ("train_acc", "val_acc", "test_acc")),
    ("loss and NLL", ("train_loss", "val_nll", "test_nll")),
    ("ECE", ("val_ece", "test_ece")),
    ("macro-F1", ("val_macro_f1", "test_macro_f1")),
    ("learning rate", LR_COLUMNS),
    ("gradient norm", ("grad_norm",)),
)
# Line styles by split and markers by group: lines stay apart in print and without colour vision.
_SPLIT_STYLES = {"train": ":", "val": "--", "test": "-"}


def curves_figure(curves: dict[str, dict[str, pd.DataFrame]]):
    """Learning curves in the panels of :data:`CURVE_PANELS` (those with data): per metric (``curves[metric]``)
    and group (``[group]``) the mean per epoch over the group's runs, a min–max band where they differ. A
    group has its colour of :func:`method_colours` and its own marker; a split (train, val, test) its line style."""
    panels = [(title, [m for m in metrics if m in curves]) for title, metrics in CURVE_PANELS]
    panels = [(title, metrics) for title, metrics in panels if metrics]
    groups = list(dict.fromkeys(g for per_group in curves.values() for g in per_group))
    styles = method_styles(groups)
    rows = (len(panels) + 1) // 2
    fig, axes = _figure(11.0, 3.4 * rows, columns=2, rows=rows)
    axes = list(axes.flat)
    for ax, (title, metrics) in zip(axes, panels, strict=False):
        for metric in metrics:
            scale = 100.0 if is_percent(metric) else 1.0
            for group, curve in curves[metric].items():
                epochs = curve.index.to_numpy()
                label = f"{group} · {metric}" if len(groups) > 1 else metric
                style = styles[group]
                ax.plot(epochs, curve["mean"] * scale, color=style.colour, marker=style.marker, markersize=4,
                        linestyle=_SPLIT_STYLES.get(metric.split("_")[0], "-"), label=label)  # fmt: skip
                if (curve["min"] != curve["max"]).any():
                    band = curve["min"] * scale, curve["max"] * scale
                    ax.fill_between(epochs, *band, color=style.colour, alpha=0.15)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric_label(metrics[0]) if len(metrics) == 1 else _unit_label(metrics))
        integer_epochs(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return fig


def _unit_label(metrics: list[str]) -> str:
    """The unit shared by a panel's metrics: ``%`` for accuracies, nats for losses."""
    label = metric_label(metrics[-1])
    return label[label.index("(") :] if "(" in label else ""


def plot_confusion(confusion: torch.Tensor, class_names: list[str], path: str | os.PathLike, title: str) -> None:
    """Write :func:`confusion_figure` to ``path`` (PNG, PDF or SVG by its extension)."""
    save_figure(confusion_figure(confusion, class_names, title), path)


def confusion_figure(confusion: torch.Tensor, class_names: list[str], title: str):
    """The confusion matrix with class names on both axes, coloured by the share of each true class
    (row-normalised); small matrices also show each cell's count."""
    k = len(class_names)
    counts = confusion.double()
    rates = (counts / counts.sum(1, keepdim=True).clamp(min=1)).numpy()
    side = min(4.0 + 0.45 * k, 40.0)
    fig, ax = _figure(side + 1.5, side)
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class's samples")
    font = max(4, 10 - k // 20)
    ax.set_xticks(range(k), class_names, rotation=90, fontsize=font)
    ax.set_yticks(range(k), class_names, fontsize=font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if k <= _ANNOTATE_MAX_CLASSES:
        for i in range(k):
            for j in range(k):
                colour = text_colour(image.cmap(image.norm(rates[i, j])))
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=7, color=colour)
    return fig


def per_class_figure(class_names: list[str], train_counts: list[int], recall: torch.Tensor, f1: torch.Tensor):
    """Per-class test recall and F1 as bars, the classes ordered by training count (most frequent left), each
    labelled with its count: where a long tail loses its rare classes."""
    order = sorted(range(len(class_names)), key=lambda y: -train_counts[y])
    k = len(order)
    fig, ax = _figure(min(3.0 + 0.45 * k, 40.0), 4.5)
    for shift, values, label in ((-0.2, recall, "recall"), (0.2, f1, "F1")):
        ax.bar([x + shift for x in range(k)], [float(values[y]) for y in order], width=0.4, label=label)
    ax.set_xticks(range(k), [f"{class_names[y]} ({train_counts[y]:,})" for y in order], rotation=90,
                  fontsize=max(4, 10 - k // 20))  # fmt: skip
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("class (training samples), by training count")
    ax.set_ylabel("test split")
    ax.legend()
    return fig


# metrics.csv columns of the training-dynamics figure (compare --plot-dynamics), one row of panels each
DYNAMICS_METRICS = ("grad_norm", "generalization_error")


def plot_dynamics(curves: dict[float, dict[str, dict[str, pd.DataFrame]]], path: str | os.PathLike) -> None:
    """Write :func:`dynamics_figure` to ``path`` (PNG, PDF or SVG by its extension)."""
    save_figure(dynamics_figure(curves), path, rect=(0, 0.06, 1, 1))


def dynamics_figure(curves: dict[float, dict[str, dict[str, pd.DataFrame]]]):
    """The PLS paper's training-dynamics figure for any runs: one column per learning rate, rows for the
    gradient norm and the generalization error (in % points) per epoch; a line per method (mean over
    seeds) and a min–max band. Methods have their style of :func:`method_styles` in every panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    styles = method_styles(m for per_lr in curves.values() for m in per_lr)
    fig = Figure(figsize=(4.6 * len(curves), 8.0))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(DYNAMICS_METRICS), len(curves), squeeze=False)
    titles = {"grad_norm": "gradient norm", "generalization_error": "generalization error"}
    for column, (lr, per_method) in enumerate(curves.items()):
        for row, metric in enumerate(DYNAMICS_METRICS):
            ax = axes[row][column]
            scale = 100.0 if is_percent(metric) else 1.0
            for method in sorted(per_method):
                curve = per_method[method][metric]
                epochs = curve.index.to_numpy()
                style = styles[method]
                ax.plot(epochs, curve["mean"] * scale, color=style.colour, marker=style.marker, markersize=4,
                        linestyle=style.linestyle, label=method)  # fmt: skip
                ax.fill_between(epochs, curve["min"] * scale, curve["max"] * scale, color=style.colour, alpha=0.2)
            ax.set_title(f"peak lr {lr:g}: {titles[metric]}", fontsize=11)
            ax.set_xlabel("epoch", fontsize=10)
            ax.set_ylabel(metric_label(metric), fontsize=10)
            ax.tick_params(labelsize=9)
            integer_epochs(ax)
            ax.grid(alpha=0.3)
    legend = {}  # every method once, whichever learning rates it was run at
    for ax in fig.axes:
        legend.update(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    labels = sorted(legend)
    handles = [legend[label] for label in labels]
    fig.suptitle("Training dynamics per peak learning rate: mean over seeds, band = min to max", fontsize=13)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=10, frameon=False)
    return fig
