"""The Q artifact: a K×K class-similarity matrix of logits saved as one validated safetensors file.

Format ``kdtool.q/1`` (see DESIGN.md), in one of two forms:

- dense: tensor ``q_logits`` (K×K float32);
- sparse top-N: ``topn_indices`` (K×N int64) and ``topn_logits`` (K×N float32), the N largest
  off-diagonal logits of each row; ``diag_logits`` (K float32); ``rest_logits`` (K float32), one
  shared logit for the K−1−N other entries of the row.

String metadata: ``format``, ``num_classes``, ``class_names`` (JSON list), ``alpha``, ``dataset``,
``source``, ``created_by``, plus free provenance keys. Loading never unpickles anything and checks
every field. Nothing here builds a K×K tensor for a sparse Q unless asked to (``to_dense``,
``probabilities``): row-wise work goes through blocks of at most ``_BLOCK_ELEMENTS`` values.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from kdtool.errors import KdtoolError
from kdtool.fileio import atomic_write, check_format, read_safetensors
from kdtool.q.maths import mixture_log_target
from kdtool.q.subsets import resolve_classes
from kdtool.runs.folder import q_artifact_path

FORMAT = "kdtool.q/1"
_REQUIRED_METADATA = ("format", "num_classes", "class_names", "alpha", "dataset", "source", "created_by")
_TENSOR_DTYPES = {
    "q_logits": torch.float32,
    "topn_indices": torch.int64,
    "topn_logits": torch.float32,
    "diag_logits": torch.float32,
    "rest_logits": torch.float32,
}
_SPARSE_TENSORS = ("topn_indices", "topn_logits", "diag_logits", "rest_logits")
# Row-wise passes (top-N, entropies, densifying) handle B×K blocks of at most this many values.
_BLOCK_ELEMENTS = 1 << 22


def _check_values(name: str, values: torch.Tensor) -> None:
    # -inf is allowed (a prior that gives a class no mass); NaN and +inf are not.
    if torch.isnan(values).any() or torch.isposinf(values).any():
        raise KdtoolError(f"{name} contains NaN or +inf values")


def _row_blocks(num_rows: int, row_length: int) -> tuple[torch.Tensor, ...]:
    """Row ids 0..num_rows-1 in blocks small enough for B×row_length values to fit the budget."""
    return torch.arange(num_rows).split(max(1, _BLOCK_ELEMENTS // max(1, row_length)))


@dataclass
class RowStats:
    """Facts about each row y of softmax(Q) (see :meth:`QMatrix.row_stats`)."""

    similar: torch.Tensor  # K×top indices of the most similar other classes, most similar first
    similar_probs: torch.Tensor  # K×top their probabilities
    diagonal: torch.Tensor  # K: probability Q keeps on y itself
    entropy: torch.Tensor  # K: entropy in nats


@dataclass
class SparseLogits:
    """Top-N form of a K×K logit matrix.

    Per row: ``indices``/``values`` hold the N largest off-diagonal logits and their columns,
    ``diag`` the diagonal logit, and ``rest`` one logit shared by the K−1−N other columns, set to
    ``logsumexp(others) − log(K−1−N)``. The row's softmax normaliser is therefore unchanged, so the
    kept entries keep their exact probabilities and the others share the remaining mass equally.
    With N = K−1 nothing is left over and ``rest`` is −inf (unused).
    """

    indices: torch.Tensor
    values: torch.Tensor
    diag: torch.Tensor
    rest: torch.Tensor

    def __post_init__(self) -> None:
        self.indices = self.indices.detach().to("cpu", torch.int64).contiguous()
        self.values, self.diag, self.rest = (
            t.detach().to("cpu", torch.float32).contiguous() for t in (self.values, self.diag, self.rest)
        )
        self._validate()

    @property
    def num_classes(self) -> int:
        return int(self.diag.shape[0])

    @property
    def n(self) -> int:
        """How many off-diagonal logits each row keeps."""
        return int(self.indices.shape[1])

    def _validate(self) -> None:
        if self.diag.ndim != 1:
            raise KdtoolError(f"diag_logits must be a vector, got shape {tuple(self.diag.shape)}")
        k = self.num_classes
        if self.indices.ndim != 2 or self.indices.shape[0] != k:
            raise KdtoolError(f"topn_indices must be K×N with K={k}, got shape {tuple(self.indices.shape)}")
        if self.values.shape != self.indices.shape:
            raise KdtoolError(
                f"topn_logits has shape {tuple(self.values.shape)}, topn_indices {tuple(self.indices.shape)}"
            )
        if self.rest.shape != (k,):
            raise KdtoolError(f"rest_logits must have K={k} entries, got shape {tuple(self.rest.shape)}")
        if not 1 <= self.n <= k - 1:
            raise KdtoolError(f"top-N needs 1 ≤ N ≤ K−1 = {k - 1}, got N={self.n}")
        if self.indices.min() < 0 or self.indices.max() >= k:
            raise KdtoolError(f"topn_indices holds a class index outside 0..{k - 1}")
        if (self.indices == torch.arange(k)[:, None]).any():
            raise KdtoolError("topn_indices lists a row's own class (the diagonal belongs in diag_logits)")
        ordered = self.indices.sort(dim=1).values
        if (ordered[:, 1:] == ordered[:, :-1]).any():
            raise KdtoolError("topn_indices repeats a class within a row")
        for name, values in (("topn_logits", self.values), ("diag_logits", self.diag), ("rest_logits", self.rest)):
            _check_values(name, values)
        best = torch.maximum(self.diag, self.values.max(dim=1).values)
        if self.n < k - 1:
            best = torch.maximum(best, self.rest)
        if torch.isneginf(best).any():
            raise KdtoolError("a row of Q is entirely -inf")

    def rows(self, classes: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The dense logit rows of ``classes`` (B×K on ``device``), built from B×N pieces."""
        k = self.num_classes
        out = self.rest[classes].to(device)[:, None].expand(-1, k).contiguous()
        out.scatter_(1, self.indices[classes].to(device), self.values[classes].to(device))
        out.scatter_(1, classes.to(device)[:, None], self.diag[classes].to(device)[:, None])
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"topn_indices": self.indices, "topn_logits": self.values, "diag_logits": self.diag,
                "rest_logits": self.rest}  # fmt: skip

    def _others(self) -> int:
        """How many columns of each row share ``rest`` (K−1−N)."""
        return self.num_classes - 1 - self.n

    def log_normalizer(self) -> torch.Tensor:
        """log Σ_j exp(Q[y, j]) of each row (K), counting ``rest`` once per column it stands for."""
        parts = [self.diag[:, None], self.values]
        if self._others():
            parts.append((self.rest + math.log(self._others()))[:, None])
        return torch.cat(parts, dim=1).logsumexp(dim=1)

    def row_stats(self, top: int) -> RowStats:
        """:class:`RowStats` straight from the K×N pieces (``top`` ≤ N), in O(K·N)."""
        log_z = self.log_normalizer()[:, None]
        best, position = self.values.topk(top, dim=1)
        p_diag, p_values = (self.diag[:, None] - log_z).exp(), (self.values - log_z).exp()
        p_rest = (self.rest[:, None] - log_z).exp()
        entropy = (
            torch.special.entr(p_diag)
            + torch.special.entr(p_values).sum(1, keepdim=True)
            + self._others() * torch.special.entr(p_rest)
        )
        return RowStats(self.indices.gather(1, position), (best - log_z).exp(), p_diag[:, 0], entropy[:, 0])

    def shrink(self, n: int) -> SparseLogits:
        """The top-``n`` form (``n`` ≤ N) of the same matrix: dropped entries merge into ``rest``, in O(K·N)."""
        values, position = self.values.topk(n, dim=1)
        others = self.num_classes - 1 - n
        if others == 0:
            rest = torch.full_like(self.rest, -math.inf)
        else:
            merged = [self.values.scatter(1, position, -math.inf)]
            if self._others():
                merged.append((self.rest + math.log(self._others()))[:, None])
            rest = torch.cat(merged, dim=1).logsumexp(dim=1) - math.log(others)
        return SparseLogits(self.indices.gather(1, position), values, self.diag, rest)

    @classmethod
    def from_rows(
        cls, row_logits: Callable[[torch.Tensor], torch.Tensor], num_classes: int, n: int, width: int | None = None
    ) -> SparseLogits:
        """Top-N form of the K×K matrix whose rows ``row_logits(row_ids)`` returns, block by block.

        ``width``: how wide the rows ``row_logits`` builds internally are (default K), to size the blocks.
        """
        k = num_classes
        parts = []
        for block in _row_blocks(k, width or k):
            rows = row_logits(block)
            diag = rows.gather(1, block[:, None]).squeeze(1)
            off = rows.scatter(1, block[:, None], -math.inf)  # the diagonal takes no part in the ranking
            values, indices = off.topk(n, dim=1)
            if n < k - 1:
                rest = off.scatter(1, indices, -math.inf).logsumexp(dim=1) - math.log(k - 1 - n)
            else:
                rest = torch.full_like(diag, -math.inf)
            parts.append((indices, values, diag, rest))
        return cls(*(torch.cat(column) for column in zip(*parts, strict=True)))


def _artifact_metadata(meta: dict[str, str]) -> tuple[list[str], float, int]:
    """A Q artifact's class names, α and number of classes, read from its metadata and checked."""
    try:
        names = json.loads(meta["class_names"])
        alpha = float(meta["alpha"])
        k = int(meta["num_classes"])
    except ValueError as exc:
        raise KdtoolError(f"malformed metadata ({exc})") from exc
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise KdtoolError("class_names must be a JSON list of strings")
    return names, alpha, k


def _check_tensor_kinds(tensors: dict[str, torch.Tensor]) -> None:
    """Refuse a Q artifact's tensors unless each is a known one of its dtype, and the Q either dense or sparse."""
    unknown = sorted(set(tensors) - set(_TENSOR_DTYPES))
    if unknown:
        raise KdtoolError(f"unexpected tensor {unknown[0]!r} in a Q artifact")
    for name, tensor in tensors.items():
        if tensor.dtype != _TENSOR_DTYPES[name]:
            raise KdtoolError(f"{name} must be {_TENSOR_DTYPES[name]}, got {tensor.dtype}")
    if "q_logits" in tensors and any(n in tensors for n in _SPARSE_TENSORS):
        raise KdtoolError("holds both a dense q_logits and sparse top-N tensors")


def _sparse_tensors(tensors: dict[str, torch.Tensor], k: int) -> SparseLogits:
    """The sparse Q of an artifact without ``q_logits``: all its tensors there, the diagonal of ``k`` classes."""
    if not any(n in tensors for n in _SPARSE_TENSORS):
        raise KdtoolError(f"no Q tensor: expected q_logits (dense) or {', '.join(_SPARSE_TENSORS)} (sparse)")
    lacking = [n for n in _SPARSE_TENSORS if n not in tensors]
    if lacking:
        raise KdtoolError(f"sparse Q lacks tensor {', '.join(lacking)}")
    if tensors["diag_logits"].shape != (k,):
        raise KdtoolError(f"diag_logits has shape {tuple(tensors['diag_logits'].shape)} but num_classes is {k}")
    return SparseLogits(*(tensors[n] for n in _SPARSE_TENSORS))


@dataclass
class QMatrix:
    """Q with the provenance that travels with it: dense ``logits`` (K×K) or a top-N ``sparse`` form.

    Exactly one of ``logits`` and ``sparse`` is set. Every operation below works on both forms.
    """

    logits: torch.Tensor | None
    class_names: list[str]
    alpha: float
    dataset: str
    source: str
    extra: dict[str, str] = field(default_factory=dict)
    sparse: SparseLogits | None = None

    def __post_init__(self) -> None:
        if (self.logits is None) == (self.sparse is None):
            raise KdtoolError("a QMatrix holds either dense logits or a sparse top-N form, exactly one of them")
        if self.logits is not None:
            self.logits = self.logits.detach().to("cpu", torch.float32).contiguous()
        self.class_names = list(self.class_names)
        self.alpha = float(self.alpha)
        self._validate()

    @property
    def num_classes(self) -> int:
        return self.sparse.num_classes if self.sparse is not None else int(self.logits.shape[0])

    @property
    def is_sparse(self) -> bool:
        return self.sparse is not None

    @property
    def stored_values(self) -> int:
        """How many numbers the artifact stores (K² dense, K·(2N+2) sparse)."""
        return sum(t.numel() for t in self._tensors().values())

    def _validate(self) -> None:
        if self.logits is not None:
            if self.logits.ndim != 2 or self.logits.shape[0] != self.logits.shape[1]:
                raise KdtoolError(f"q_logits must be K×K, got shape {tuple(self.logits.shape)}")
            _check_values("q_logits", self.logits)
            if torch.isneginf(self.logits).all(1).any():
                raise KdtoolError("a row of q_logits is entirely -inf")
        if len(self.class_names) != self.num_classes:
            raise KdtoolError(f"{len(self.class_names)} class names for K={self.num_classes}")
        if not 0.0 < self.alpha < 1.0:
            raise KdtoolError(f"alpha must be in (0, 1), got {self.alpha}")

    # -- rows and targets ------------------------------------------------------------------
    def row_logits(self, classes: torch.Tensor) -> torch.Tensor:
        """The logit rows ``Q[classes]`` (B×K, on the device of ``classes``); never K×K for sparse."""
        index = classes.detach().to("cpu", torch.long)
        if index.numel() and (index.min() < 0 or index.max() >= self.num_classes):
            raise KdtoolError(f"class index outside 0..{self.num_classes - 1} for this Q")
        if self.sparse is not None:
            return self.sparse.rows(index, classes.device)
        return self.logits[index].to(classes.device)

    def log_targets(self, labels: torch.Tensor, alpha: float | None = None) -> torch.Tensor:
        """``log((1-α)·e_y + α·softmax(Q[y]))`` for a batch of labels (B×K), computed stably."""
        alpha = self.alpha if alpha is None else alpha
        return mixture_log_target(self.row_logits(labels), labels, alpha)

    def targets(self, labels: torch.Tensor, alpha: float | None = None) -> torch.Tensor:
        """Soft targets ``(1-α)·e_y + α·softmax(Q[y])`` for a batch of labels (B×K)."""
        return self.log_targets(labels, alpha).exp()

    def probabilities(self) -> torch.Tensor:
        """Row-wise softmax of the logits: the full K×K matrix, also for a sparse Q."""
        return F.softmax(self.to_dense().logits, dim=1)

    def row_stats(self, top: int = 3) -> RowStats:
        """Per class: its ``top`` most similar *other* classes, its own probability, its entropy.

        A sparse Q knows only its top N per row (the others share one probability), so at most N
        similar classes come back; it is summarised from its K×N pieces without building rows.
        """
        top = min(top, self.num_classes - 1, self.sparse.n if self.sparse is not None else top)
        if self.sparse is not None:
            return self.sparse.row_stats(top)
        parts = []
        for block in _row_blocks(self.num_classes, self.num_classes):
            probs = F.softmax(self.logits[block], dim=1)
            diagonal = probs.gather(1, block[:, None]).squeeze(1)
            similar = probs.scatter(1, block[:, None], -1.0).topk(top, dim=1)  # rank the other classes only
            parts.append((similar.indices, similar.values, diagonal, torch.special.entr(probs).sum(1)))
        return RowStats(*(torch.cat(column) for column in zip(*parts, strict=True)))

    # -- reshaping -------------------------------------------------------------------------
    def with_extra(self, extra: dict[str, str]) -> QMatrix:
        """A copy with more provenance metadata (later keys win)."""
        return dataclasses.replace(self, extra={**self.extra, **{k: str(v) for k, v in extra.items()}})

    def subset(self, indices: list[int]) -> QMatrix:
        """Q restricted to the kept classes, in the given order: the *logits* are sliced
        (``Q[S][:, S]``), so softmax then spreads each row over the kept classes only.

        A sparse Q stays sparse (N capped at |S|−1) and is the exact subset of the matrix it stands for.
        """
        indices = resolve_classes(self.class_names, indices=indices)
        index = torch.as_tensor(indices, dtype=torch.long)
        logits, sparse = None, None
        if self.sparse is None:
            logits = self.logits[index][:, index]
        else:
            sparse = SparseLogits.from_rows(
                lambda rows: self.row_logits(index[rows])[:, index],
                len(indices),
                min(self.sparse.n, len(indices) - 1),
                width=self.num_classes,
            )
        return QMatrix(logits, [self.class_names[i] for i in indices], self.alpha, self.dataset, source="subset",
                       extra={**self.extra, "parent_classes": json.dumps(indices)}, sparse=sparse)  # fmt: skip

    def to_sparse(self, n: int) -> QMatrix:
        """The top-N form: per row the N largest off-diagonal logits, the diagonal, one shared rest logit."""
        limit = self.sparse.n if self.sparse is not None else self.num_classes - 1
        if not 1 <= n <= limit:
            kind = f"this sparse Q keeps N={limit}" if self.sparse is not None else f"K−1 = {limit}"
            raise KdtoolError(f"top-N must be between 1 and {limit} ({kind}), got {n}")
        if self.sparse is not None:
            sparse = self.sparse.shrink(n)
        else:
            sparse = SparseLogits.from_rows(self.row_logits, self.num_classes, n)
        return QMatrix(None, self.class_names, self.alpha, self.dataset, source="sparse",
                       extra={**self.extra, "topn": str(n), "parent_source": self.source}, sparse=sparse)  # fmt: skip

    def to_dense(self) -> QMatrix:
        """The K×K form (``self`` when already dense); a sparse Q's other entries become its rest logit."""
        if self.sparse is None:
            return self
        blocks = _row_blocks(self.num_classes, self.num_classes)
        logits = torch.cat([self.row_logits(block) for block in blocks])
        return QMatrix(logits, self.class_names, self.alpha, self.dataset, self.source, dict(self.extra))

    @classmethod
    def from_class_means(
        cls,
        logits: torch.Tensor,
        labels: torch.Tensor,
        class_names: list[str],
        alpha: float,
        dataset: str,
        extra: dict[str, str] | None = None,
        temperature: float = 1.0,
    ) -> QMatrix:
        """Q estimated from a network's outputs: ``Q[y] = mean of log_softmax(z/T)`` over the samples of class y.

        ``softmax(Q[y])`` is then the normalised geometric mean of the network's predictions for class y at
        temperature T (``temperature``); T > 1 spreads mass from the diagonal to the similar classes.
        """
        if not temperature > 0:
            raise KdtoolError(f"--temperature must be positive, got {temperature}")
        k = len(class_names)
        log_probs = F.log_softmax(logits.detach().to("cpu", torch.float64) / temperature, dim=1)
        labels = labels.detach().to("cpu", torch.long)
        counts = torch.bincount(labels, minlength=k)
        if (counts == 0).any():
            missing = class_names[int((counts == 0).nonzero()[0])]
            raise KdtoolError(f"class {missing!r} has no samples: cannot estimate its row of Q")
        sums = torch.zeros(k, k, dtype=torch.float64).index_add_(0, labels, log_probs)
        info = {"estimator": "class-mean-log-prob", "temperature": f"{temperature:g}", "samples": str(len(labels)),
                **(extra or {})}  # fmt: skip
        return cls((sums / counts[:, None]).float(), class_names, alpha, dataset, "teacher", info)

    # -- files -----------------------------------------------------------------------------
    def _tensors(self) -> dict[str, torch.Tensor]:
        return self.sparse.tensors() if self.sparse is not None else {"q_logits": self.logits}

    def metadata(self) -> dict[str, str]:
        from kdtool import __version__

        return {
            **self.extra,
            "format": FORMAT,
            "num_classes": str(self.num_classes),
            "class_names": json.dumps(self.class_names),
            "alpha": repr(float(self.alpha)),
            "dataset": self.dataset,
            "source": self.source,
            "created_by": f"kdtool {__version__}",
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the artifact atomically (temporary file, fsync, rename)."""
        tensors = self._tensors()
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=self.metadata()))

    @classmethod
    def stored_alpha(cls, path: str | os.PathLike) -> float:
        """The α the artifact at ``path`` records, read from its header alone (a K×K Q can be large);
        a header without a valid α falls back to :meth:`load`, whose one-line error names the fault."""
        _, meta = read_safetensors(q_artifact_path(path), "Q artifact", tensors=False)
        try:
            return float(meta["alpha"])
        except (KeyError, ValueError):
            return cls.load(path).alpha

    @classmethod
    def load(cls, path: str | os.PathLike) -> QMatrix:
        """Read and validate a dense or sparse artifact (or the ``q.safetensors`` of a run folder given in
        its place); every fault is a KdtoolError naming the file."""
        path = q_artifact_path(path)
        tensors, meta = read_safetensors(path, "Q artifact")
        try:
            return cls._from_contents(tensors, meta)
        except KdtoolError as exc:
            raise KdtoolError(f"{path}: {exc}") from exc

    @classmethod
    def _from_contents(cls, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> QMatrix:
        check_format(meta, _REQUIRED_METADATA, FORMAT, "Q artifact")
        names, alpha, k = _artifact_metadata(meta)
        _check_tensor_kinds(tensors)
        extra = {key: value for key, value in meta.items() if key not in _REQUIRED_METADATA}
        if "q_logits" in tensors:
            logits = tensors["q_logits"]
            if logits.ndim != 2 or logits.shape[0] != k:
                raise KdtoolError(f"q_logits has shape {tuple(logits.shape)} but num_classes is {k}")
            return cls(logits, names, alpha, meta["dataset"], meta["source"], extra)
        return cls(None, names, alpha, meta["dataset"], meta["source"], extra, sparse=_sparse_tensors(tensors, k))
