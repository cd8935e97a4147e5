"""Reports on Q: a heatmap picture, and how well Q agrees with a model's confusion matrix.

matplotlib is imported only when a picture is drawn, and only through the Agg canvas, so kdtool
never touches pyplot's global backend state.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from kdtool.errors import KdtoolError
from kdtool.q.matrix import QMatrix, SparseLogits
from kdtool.q.subsets import resolve_classes
from kdtool.stats import spearman
from kdtool.training.metrics import confusion_matrix, select_classes

if TYPE_CHECKING:
    import numpy as np

HEATMAP_MAX_CLASSES = 300  # beyond this a K×K picture is unreadable (and costly for a large sparse Q)
_ANNOTATE_MAX_CLASSES = 15  # small matrices get each cell's percentage written in it


def check_heatmap_size(q: QMatrix) -> None:
    if q.num_classes > HEATMAP_MAX_CLASSES:
        raise KdtoolError(
            f"a heatmap of {q.num_classes} classes is unreadable (limit {HEATMAP_MAX_CLASSES}): "
            "plot a subset made with transfer-q --classes"
        )


def cell_decimals(rows, max_decimals: int = 3) -> int:
    """The fewest decimals (0 to ``max_decimals``) at which every row of ``rows`` (arrays of numbers) has as
    many distinct values as at ``max_decimals``: the written numbers then rank a row's cells as their
    values do (rounding keeps the order and, at that many decimals, merges no two values)."""
    import numpy as np

    finest = [len(np.unique(np.round(row, max_decimals))) for row in rows]
    return next(d for d in range(max_decimals + 1)
                if all(len(np.unique(np.round(row, d))) == n for row, n in zip(rows, finest, strict=True)))  # fmt: skip


def plot_q_heatmap(q: QMatrix, path: str | os.PathLike, title: str = "") -> None:
    """Write :func:`q_heatmap_figure` to ``path`` (PNG, PDF or SVG by its extension)."""
    from kdtool.reporting.plots import save_figure

    fig, rect = q_heatmap_figure(q, title)
    save_figure(fig, path, rect)


def q_heatmap_png(q: QMatrix, title: str = "") -> bytes:
    """:func:`q_heatmap_figure` as a PNG file's bytes (for trackers and HTML reports)."""
    from kdtool.reporting.plots import figure_bytes

    fig, rect = q_heatmap_figure(q, title)
    return figure_bytes(fig, "png", rect)


def q_heatmap_figure(q: QMatrix, title: str = "") -> tuple[Any, tuple[float, float, float, float]]:
    """softmax(Q) as a heatmap, class names on both axes, the diagonal masked (grey); with the part of the
    figure (``rect``) it is laid out in, above its notes.

    The colour scale spans the off-diagonal range (smallest to largest cell; the colour bar says so and
    marks the uniform level 1/K where it falls inside), so a near-uniform Q shows its small differences
    rather than one bright block. Small matrices get each cell's percentage, with as many decimals as it
    takes to rank the cells of a row (at most one from K = 10 on), in black or white by the cell's colour;
    in a sparse Q the kept top-N cells are outlined.
    """
    import matplotlib
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    check_heatmap_size(q)
    k = q.num_classes
    percent = 100 * q.probabilities().double().numpy()
    off = ~np.eye(k, dtype=bool)
    masked = np.ma.masked_array(percent, mask=~off)
    top = float(percent[off].max()) if k > 1 else 100.0
    low = float(percent[off].min()) if k > 1 else 0.0
    norm = Normalize(vmin=low, vmax=top) if top > low else Normalize(vmin=0.0, vmax=max(top, 1e-9))
    side = min(4.0 + 0.45 * k, 40.0)
    fig = Figure(figsize=(side + 2.0, side + 0.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    image = ax.imshow(masked, cmap=cmap, norm=norm, interpolation="nearest")
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label(f"softmax(Q[y]) in %, off-diagonal; scale: the off-diagonal range {norm.vmin:.3g} to {top:.3g}%")
    uniform = 100.0 / k
    if norm.vmin <= uniform <= top:  # where a cell of an untrained (all-zero) Q would sit
        _mark_uniform(bar.ax, uniform)
    font = max(4, 10 - k // 20)
    ax.set_xticks(range(k), q.class_names, rotation=90, fontsize=font)
    ax.set_yticks(range(k), q.class_names, fontsize=font)
    ax.set_xlabel("similar class")
    ax.set_ylabel("class y (row of Q)")
    ax.set_title(title or f"Q · {q.dataset} · source {q.source} · α={q.alpha:g}")
    notes = [f"off-diagonal cells {low:.3g}% to {top:.3g}%; uniform 1/K = {uniform:.3g}% (dashed on the scale: "
             "where an all-zero Q would be); diagonal masked (grey)"]  # fmt: skip
    if q.sparse is not None:
        notes.append(_outline_kept(ax, q.sparse))
    if k <= _ANNOTATE_MAX_CLASSES:
        notes.append(_write_cells(ax, percent, lambda value: cmap(norm(value))))
    fig.text(0.01, 0.005, "\n".join(notes), fontsize=8, va="bottom", ha="left")
    return fig, (0, 0.02 + 0.025 * len(notes), 1, 1)


def _mark_uniform(bar_axes: Any, uniform: float) -> None:
    """The uniform level 1/K (in %) on the colour bar: a dashed line, labelled."""
    bar_axes.axhline(uniform, color="white", linewidth=2.5)
    bar_axes.axhline(uniform, color="black", linewidth=1.0, linestyle="--")
    bar_axes.annotate("1/K", (0, uniform), xycoords=("axes fraction", "data"), xytext=(-3, 0),
                      textcoords="offset points", ha="right", va="center", fontsize=8)  # fmt: skip


def _outline_kept(ax: Any, sparse: SparseLogits) -> str:
    """A sparse Q's kept top-N cells outlined on the heatmap ``ax``; returns the figure's note on them."""
    from matplotlib.patches import Rectangle

    for row, columns in enumerate(sparse.indices.tolist()):
        for column in columns:
            ax.add_patch(Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    n = sparse.n
    return f"sparse top-{n}: outlined (red) the {n} kept cells per row; the others share the rest equally"


def _write_cells(ax: Any, percent: np.ndarray, colour_of: Callable[[float], Any]) -> str:
    """Each off-diagonal cell's percentage written in it, in black or white by its colour (``colour_of`` a
    value), with as many decimals as rank a row's cells; returns the figure's note on them."""
    import numpy as np

    from kdtool.reporting.plots import text_colour

    k = len(percent)
    off = ~np.eye(k, dtype=bool)
    decimals = cell_decimals([percent[i][off[i]] for i in range(k)], max_decimals=3 if k < 10 else 1)
    for i in range(k):
        for j in range(k):
            if i != j:
                colour = text_colour(colour_of(percent[i, j]))
                ax.text(j, i, f"{percent[i, j]:.{decimals}f}", ha="center", va="center", fontsize=7, color=colour)
    return f"cells: % with {decimals} decimal{'s' if decimals != 1 else ''}"


@dataclass
class ConfusionAgreement:
    """Q's off-diagonal probabilities against a row-normalised confusion matrix (same classes, same order).

    ``spearman``: rank correlation over all off-diagonal cells of rows that have test samples.
    Per row: Q's most similar class, the classes the row is most often mistaken for (several on a
    tie, none when the row has no mistakes), whether Q's choice is among them (None without
    mistakes), and the row's own rank correlation (NaN when a row is constant).
    """

    spearman: float
    pvalue: float
    cells: int
    q_top: list[int]
    confusion_top: list[list[int]]
    agrees: list[bool | None]
    row_spearman: list[float]
    confusion_rates: torch.Tensor

    @property
    def top1_agreement(self) -> tuple[int, int]:
        """(rows that agree, rows with a mistake to compare with)."""
        decided = [a for a in self.agrees if a is not None]
        return sum(decided), len(decided)


def confusion_agreement(q: QMatrix, confusion: torch.Tensor) -> ConfusionAgreement:
    """Compare Q with ``confusion`` (K×K counts, rows = true class, in Q's class order)."""
    k = q.num_classes
    if confusion.shape != (k, k):
        raise KdtoolError(f"confusion matrix is {tuple(confusion.shape)}, Q has {k} classes")
    counts = confusion.double()
    totals = counts.sum(1, keepdim=True)
    rates = counts / totals.clamp(min=1)
    probs = q.probabilities().double()
    off = ~torch.eye(k, dtype=torch.bool)
    seen = (totals.squeeze(1) > 0)[:, None] & off  # rows without test samples say nothing
    overall = spearman(probs[seen], rates[seen])  # constant inputs give NaN, which is reported as such
    row_rho = [spearman(probs[i][off[i]], rates[i][off[i]])[0] for i in range(k)]
    q_top = probs.masked_fill(~off, -1.0).argmax(1)
    mistakes = counts.masked_fill(~off, -1.0)
    worst = mistakes.max(1).values
    confusion_top = [(mistakes[i] == worst[i]).nonzero().flatten().tolist() if worst[i] > 0 else [] for i in range(k)]
    agrees = [int(q_top[i]) in confusion_top[i] if confusion_top[i] else None for i in range(k)]
    return ConfusionAgreement(overall[0], overall[1], int(seen.sum()), q_top.tolist(),
                              confusion_top, agrees, row_rho, rates.float())  # fmt: skip


def confusion_on_classes(
    logits: torch.Tensor, labels: torch.Tensor, class_names: list[str], kept: list[str]
) -> torch.Tensor:
    """Confusion matrix over the classes ``kept`` (names, in that order) of a model's predictions.

    Samples of other classes are dropped and predictions are the argmax over the kept classes only,
    the same class-subset rule a sliced Q follows, so a subset Q can be checked against a full model.
    """
    try:
        index = resolve_classes(class_names, names=kept)
    except KdtoolError as exc:
        raise KdtoolError(f"the Q's classes are not among the run's: {exc}") from exc
    return confusion_matrix(*select_classes(logits, labels, index))
