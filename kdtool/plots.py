"""Pictures of runs: learning curves beside a reliability diagram (``compare --plot``) and a
confusion matrix (``evaluate``).

Like report.py, this draws on matplotlib's Agg canvas only (no pyplot global state), imported when
a picture is drawn, and writes each PNG atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd
import torch

from kdtool.fileio import atomic_write

_ANNOTATE_MAX_CLASSES = 15  # small matrices get each cell's count written in it


@dataclass
class GroupCurve:
    """One group of runs as ``compare --plot`` draws it.

    ``curve``: index epoch, columns ``mean``, ``min``, ``max`` of the metric over the group's runs.
    ``calibration``: (count, summed confidence, summed hits) per confidence bin of the group's best
    run on its test set (see :func:`kdtool.metrics.calibration_bins`), or None when not drawn.
    """

    name: str
    runs: int
    curve: pd.DataFrame
    best_run: str
    calibration: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None


def _figure(width: float, height: float, columns: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, columns)


def _save(fig, path: str | os.PathLike) -> None:
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def plot_comparison(groups: list[GroupCurve], metric: str, path: str | os.PathLike, title: str = "") -> None:
    """Left: ``metric`` per epoch, a mean line and a min–max band per group. Right: a reliability
    diagram (accuracy against confidence per bin) of each group's best run. Same colour, same group."""
    fig, (curves, reliability) = _figure(13.0, 5.2, columns=2)
    percent = metric.endswith("acc")
    scale = 100.0 if percent else 1.0
    for index, group in enumerate(groups):
        colour = f"C{index % 10}"
        epochs = group.curve.index.to_numpy()
        runs = f"{group.runs} run{'s' if group.runs != 1 else ''}"
        curves.plot(epochs, group.curve["mean"] * scale, color=colour, marker=".", label=f"{group.name} ({runs})")
        curves.fill_between(epochs, group.curve["min"] * scale, group.curve["max"] * scale, color=colour, alpha=0.2)
        if group.calibration is not None:
            count, confidence, hits = group.calibration
            seen = count > 0
            reliability.plot(confidence[seen] / count[seen], hits[seen] / count[seen], marker="o", color=colour,
                             label=f"{group.name}: {group.best_run}")  # fmt: skip
    curves.set_xlabel("epoch")
    curves.set_ylabel(f"{metric}{' (%)' if percent else ''}")
    curves.set_title(title or f"{metric} per epoch: mean over runs, band = min to max")
    curves.grid(alpha=0.3)
    curves.legend()
    reliability.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    reliability.set_xlim(0, 1)
    reliability.set_ylim(0, 1)
    reliability.set_xlabel("confidence (mean max-probability of the bin)")
    reliability.set_ylabel("accuracy of the bin")
    reliability.set_title("reliability of each group's best run (test set, 15 bins)")
    reliability.grid(alpha=0.3)
    reliability.legend(fontsize=8, loc="upper left")
    _save(fig, path)


def plot_confusion(confusion: torch.Tensor, class_names: list[str], path: str | os.PathLike, title: str) -> None:
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
                colour = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=7, color=colour)
    _save(fig, path)


def plot_dynamics(curves: dict[float, dict[str, dict[str, pd.DataFrame]]], path: str | os.PathLike) -> None:
    """The PLS paper's training-dynamics figure for any runs: one column per learning rate, rows for the
    gradient norm and the generalization error per epoch; a line per method (mean over seeds) and a
    min–max band. Methods keep their colour across panels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from kdtool.compare import DYNAMICS_METRICS

    methods = sorted({m for per_lr in curves.values() for m in per_lr})
    colours = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    fig = Figure(figsize=(4.2 * len(curves), 7.0))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(DYNAMICS_METRICS), len(curves), squeeze=False)
    titles = {"grad_norm": "gradient norm (mean over steps)", "generalization_error": "|test error − train error|"}
    for column, (lr, per_method) in enumerate(curves.items()):
        for row, metric in enumerate(DYNAMICS_METRICS):
            ax = axes[row][column]
            for method, frames in per_method.items():
                curve = frames[metric]
                epochs = curve.index.to_numpy()
                ax.plot(epochs, curve["mean"], color=colours[method], label=method)
                ax.fill_between(epochs, curve["min"], curve["max"], color=colours[method], alpha=0.2)
            ax.set_title(f"lr {lr:g}: {titles[metric]}", fontsize=9)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    _save(fig, path)
