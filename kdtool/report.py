"""Reports on Q: a heatmap picture, and how well Q agrees with a model's confusion matrix.

matplotlib is imported only when a picture is drawn, and only through the Agg canvas, so kdtool
never touches pyplot's global backend state.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch

from kdtool.errors import KdtoolError
from kdtool.fileio import atomic_write
from kdtool.metrics import confusion_matrix, select_classes
from kdtool.qmatrix import QMatrix
from kdtool.subsets import resolve_classes

HEATMAP_MAX_CLASSES = 300  # beyond this a K×K picture is unreadable (and costly for a large sparse Q)
_ANNOTATE_MAX_CLASSES = 15  # small matrices get each cell's percentage written in it


def check_heatmap_size(q: QMatrix) -> None:
    if q.num_classes > HEATMAP_MAX_CLASSES:
        raise KdtoolError(
            f"a heatmap of {q.num_classes} classes is unreadable (limit {HEATMAP_MAX_CLASSES}): "
            "plot a subset made with transfer-q --classes"
        )


def plot_q_heatmap(q: QMatrix, path: str | os.PathLike, title: str = "") -> None:
    """Write softmax(Q) as a PNG heatmap, class names on both axes, the diagonal masked (grey).

    Masking the diagonal lets the colour scale show the off-diagonal class similarities.
    """
    import matplotlib
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    check_heatmap_size(q)
    k = q.num_classes
    probs = q.probabilities().numpy()
    masked = np.ma.masked_array(probs, mask=np.eye(k, dtype=bool))
    side = min(4.0 + 0.45 * k, 40.0)
    fig = Figure(figsize=(side + 1.5, side))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    image = ax.imshow(masked, cmap=cmap, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="softmax(Q[y]) (cells: %, diagonal masked)")
    ax.set_xticks(range(k), q.class_names, rotation=90, fontsize=max(4, 10 - k // 20))
    ax.set_yticks(range(k), q.class_names, fontsize=max(4, 10 - k // 20))
    ax.set_xlabel("similar class")
    ax.set_ylabel("class y (row of Q)")
    ax.set_title(title or f"Q · {q.dataset} · source {q.source} · α={q.alpha:g}")
    if k <= _ANNOTATE_MAX_CLASSES:
        threshold = masked.max() / 2
        for i in range(k):
            for j in range(k):
                if i != j:
                    colour = "black" if probs[i, j] > threshold else "white"
                    ax.text(j, i, f"{100 * probs[i, j]:.0f}", ha="center", va="center", fontsize=7, color=colour)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))


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
    from scipy.stats import spearmanr

    k = q.num_classes
    if confusion.shape != (k, k):
        raise KdtoolError(f"confusion matrix is {tuple(confusion.shape)}, Q has {k} classes")
    counts = confusion.double()
    totals = counts.sum(1, keepdim=True)
    rates = counts / totals.clamp(min=1)
    probs = q.probabilities().double()
    off = ~torch.eye(k, dtype=torch.bool)
    seen = (totals.squeeze(1) > 0)[:, None] & off  # rows without test samples say nothing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant inputs give NaN, which is reported as such
        overall = spearmanr(probs[seen].numpy(), rates[seen].numpy())
        row_rho = [float(spearmanr(probs[i][off[i]].numpy(), rates[i][off[i]].numpy())[0]) for i in range(k)]
    q_top = probs.masked_fill(~off, -1.0).argmax(1)
    mistakes = counts.masked_fill(~off, -1.0)
    worst = mistakes.max(1).values
    confusion_top = [(mistakes[i] == worst[i]).nonzero().flatten().tolist() if worst[i] > 0 else [] for i in range(k)]
    agrees = [int(q_top[i]) in confusion_top[i] if confusion_top[i] else None for i in range(k)]
    return ConfusionAgreement(float(overall[0]), float(overall[1]), int(seen.sum()), q_top.tolist(),
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
