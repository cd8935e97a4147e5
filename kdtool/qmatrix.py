"""The Q artifact: a K×K class-similarity matrix of logits saved as one validated safetensors file.

Format ``kdtool.q/1`` (see DESIGN.md): tensor ``q_logits`` (K×K float32), and string metadata
``format``, ``num_classes``, ``class_names`` (JSON list), ``alpha``, ``dataset``, ``source``,
``created_by``. Loading never unpickles anything and checks every field.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from kdtool.errors import KdtoolError
from kdtool.fileio import atomic_write
from kdtool.targets.lls import mixture_log_target

FORMAT = "kdtool.q/1"
_REQUIRED_METADATA = ("format", "num_classes", "class_names", "alpha", "dataset", "source", "created_by")


@dataclass
class QMatrix:
    """A dense K×K matrix of logits plus the provenance that travels with it."""

    logits: torch.Tensor
    class_names: list[str]
    alpha: float
    dataset: str
    source: str
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.logits = self.logits.detach().to("cpu", torch.float32).contiguous()
        self.class_names = list(self.class_names)
        self._validate()

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[0])

    def _validate(self) -> None:
        if self.logits.ndim != 2 or self.logits.shape[0] != self.logits.shape[1]:
            raise KdtoolError(f"q_logits must be K×K, got shape {tuple(self.logits.shape)}")
        # -inf is allowed (a prior that gives a class no mass); NaN and +inf are not.
        if torch.isnan(self.logits).any() or torch.isposinf(self.logits).any():
            raise KdtoolError("q_logits contains NaN or +inf values")
        if torch.isneginf(self.logits).all(1).any():
            raise KdtoolError("a row of q_logits is entirely -inf")
        if len(self.class_names) != self.num_classes:
            raise KdtoolError(f"{len(self.class_names)} class names for K={self.num_classes}")
        if not 0.0 < self.alpha < 1.0 or math.isnan(self.alpha):
            raise KdtoolError(f"alpha must be in (0, 1), got {self.alpha}")

    def probabilities(self) -> torch.Tensor:
        """Row-wise softmax of the logits (K×K, rows sum to 1)."""
        return F.softmax(self.logits, dim=1)

    def targets(self, labels: torch.Tensor, alpha: float | None = None) -> torch.Tensor:
        """Soft targets ``(1-α)·e_y + α·softmax(Q[y])`` for a batch of labels (B×K)."""
        alpha = self.alpha if alpha is None else alpha
        rows = self.logits.to(labels.device)[labels]
        return mixture_log_target(rows, labels, alpha).exp()

    def subset(self, indices: list[int]) -> QMatrix:
        """Q restricted to the kept classes, in the given order: the *logits* are sliced
        (``Q[S][:, S]``), so softmax then spreads each row over the kept classes only."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return QMatrix(
            self.logits[index][:, index],
            [self.class_names[i] for i in indices],
            self.alpha,
            self.dataset,
            source="subset",
            extra={**self.extra, "parent_classes": json.dumps(list(indices))},
        )

    def metadata(self) -> dict[str, str]:
        from kdtool import __version__

        meta = {
            **self.extra,
            "format": FORMAT,
            "num_classes": str(self.num_classes),
            "class_names": json.dumps(self.class_names),
            "alpha": repr(float(self.alpha)),
            "dataset": self.dataset,
            "source": self.source,
            "created_by": f"kdtool {__version__}",
        }
        return meta

    def save(self, path: str | os.PathLike) -> None:
        """Write the artifact atomically (temporary file, fsync, rename)."""
        tensors = {"q_logits": self.logits}
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=self.metadata()))

    @classmethod
    def load(cls, path: str | os.PathLike) -> QMatrix:
        """Read and validate an artifact; every fault is a KdtoolError naming the file."""
        path = Path(path)
        if not path.is_file():
            raise KdtoolError(f"Q artifact {path} does not exist")
        with open(path, "rb") as fh:
            head = fh.read(2)
        if head[:1] == b"\x80" or head == b"PK":
            raise KdtoolError(f"{path} is a pickle / torch.save file, not safetensors: kdtool never unpickles")
        try:
            tensors = load_file(str(path))
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
        except (SafetensorError, OSError, ValueError) as exc:
            raise KdtoolError(f"{path} is not a readable safetensors file ({exc})") from exc
        missing = [k for k in _REQUIRED_METADATA if k not in meta]
        if missing:
            raise KdtoolError(f"{path}: metadata lacks {', '.join(missing)}; not a kdtool Q artifact")
        if meta["format"] != FORMAT:
            raise KdtoolError(f"{path}: unknown format {meta['format']!r} (this kdtool reads {FORMAT})")
        if "q_logits" not in tensors:
            raise KdtoolError(f"{path}: tensor q_logits is missing")
        try:
            names = json.loads(meta["class_names"])
            alpha = float(meta["alpha"])
            k = int(meta["num_classes"])
        except ValueError as exc:
            raise KdtoolError(f"{path}: malformed metadata ({exc})") from exc
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise KdtoolError(f"{path}: class_names must be a JSON list of strings")
        logits = tensors["q_logits"]
        if logits.dtype != torch.float32:
            raise KdtoolError(f"{path}: q_logits must be float32, got {logits.dtype}")
        if logits.ndim != 2 or logits.shape[0] != k:
            raise KdtoolError(f"{path}: q_logits has shape {tuple(logits.shape)} but num_classes is {k}")
        extra = {key: value for key, value in meta.items() if key not in _REQUIRED_METADATA}
        try:
            return cls(logits, names, alpha, meta["dataset"], meta["source"], extra)
        except KdtoolError as exc:
            raise KdtoolError(f"{path}: {exc}") from exc
