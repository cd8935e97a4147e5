"""The teacher cache artifact (format ``kdtool.cache/2``): a teacher's logits over V augmented views of
every training sample, stored once, replayed by students instead of running the teacher, and read lazily
so that it may be bigger than memory.

One safetensors file, for N samples, V views, the top-k of K classes, in view-major order (a view's rows
are one contiguous block, a sample's row in it a fixed number of bytes):

- ``sample_index`` (N int64): each row's sample id (its index in the training split as listed or loaded,
  before any subset), so a student's subset, ``--limit-train``, workers and torchrun ranks find their rows;
- ``label`` (N int64): each row's class index, checked against the student's labels (other data: refused);
- ``aug_params`` (V×N×P): what the augmentation drew for each sample in each view. In-memory data: the
  choices of :meth:`kdtool.data.ImageBatchTransform.draw` (crop offsets, flip; int16, P = 0 without
  augmentation). Streamed data: the random-resized crop box, the flip and the source image's size
  (top, left, height, width, flip, image height, image width; int32, :class:`kdtool.data.stream.SampleTransform`);
- k = K (the default, exact): ``logits`` (V×N×K, the cache dtype), every logit in class order;
- k < K: ``topk_indices`` (V×N×k int16, int32 from K > 32767) and ``topk_logits`` (V×N×k), the teacher's k
  largest logits and their classes; ``gt_logit`` (V×N), the ground-truth class's logit; ``rest_logit``
  (V×N), one logit standing for each class outside the top-k and the ground truth,
  ``logsumexp(others) − log(#others)``, so the softmax keeps their total mass exactly (−inf where none is left).

Logits are stored as ``--cache-dtype`` (float16 by default, bfloat16 or float32): a replay equals the live
teacher whose logits are rounded to that dtype. Bytes per sample and view: K·s (k = K), or k·(s + 2) + 2·s
(k < K, s the dtype's size), plus the augmentation's 2·P (memory) or 28 (streamed).

Metadata (strings): ``format``, ``teacher_run``, ``teacher_sha256`` (of its weights), ``dataset``,
``class_names`` (JSON), ``num_samples``, ``views``, ``top_k``, ``cache_dtype``, ``data_options`` (JSON:
dataset, image size, augmentation, limit, seed, data path), ``created_by``. Opening reads the header (and
the N-row index) only; :meth:`TeacherCache.open` loads the tensors whole only when they fit the memory
budget, and otherwise reads each batch's rows from the file (``os.pread``: the page cache holds them,
never this process's memory). Rows are validated as they are read (finite logits, class indices in range,
the label). A ``kdtool.cache/1`` file (whole-file, float32) is refused in one line: rebuild it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import safe_open

from kdtool.data.augment import MIXERS, parse_augment
from kdtool.errors import KdtoolError
from kdtool.fileio import check_format, read_safetensors

FORMAT = "kdtool.cache/2"
CACHE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
_SAFETENSORS_DTYPES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.int16: "I16",
                       torch.int32: "I32", torch.int64: "I64"}  # fmt: skip
_METADATA = ("format", "teacher_run", "teacher_sha256", "dataset", "class_names", "num_samples", "views", "top_k",
             "cache_dtype", "data_options", "created_by")  # fmt: skip


def data_options(
    dataset: str, image_size: int, augment: str, limit_train: int | None, seed: int, text: bool, loader: str = "memory"
) -> dict[str, Any]:
    """The options that decide which samples a cache holds and how its views were augmented.

    ``augment`` keeps the per-image augmentations only (batch mixing is the student's own);
    ``image_size`` counts for ``imagefolder:`` and ``wds:`` data only, and the seed only where it picks the
    ``limit_train`` samples (the views' own draws are stored, whatever seed made them); ``loader`` is the
    data path (memory or stream), whose augmentations differ."""
    return {
        "dataset": dataset,
        "image_size": image_size if dataset.startswith(("imagefolder:", "wds:")) else None,
        "augment": "none" if text else per_image_augment(parse_augment(augment)),
        "limit_train": limit_train,
        "seed": seed if limit_train is not None else None,
        "loader": loader,
    }


def per_image_augment(augment: Collection[str]) -> str:
    """The per-image part of ``augment`` (names from :func:`~kdtool.data.augment.parse_augment`) as a cache
    records it: ``none``, or the names joined by commas; batch mixing is left out (the student's own)."""
    return ",".join(name for name in augment if name not in MIXERS) or "none"


def _option(key: str, value: Any) -> str:
    """A data option as typed: ``--limit-train 256``, or ``no --limit-train`` when unset."""
    flag = "--" + key.replace("_", "-")
    return f"no {flag}" if value is None else f"{flag} {value}"


def compress_logits(logits: torch.Tensor, top_k: int, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """B×K logits of samples of class ``labels`` -> the float32 parts a cache stores (see the module docstring):
    ``logits`` where k = K; else the top-k classes and logits, the ground-truth logit and one rest logit per
    row keeping the total mass of the classes outside both."""
    logits = logits.float()
    num_classes = logits.shape[1]
    if top_k == num_classes:
        return {"logits": logits}
    values, indices = logits.topk(top_k, dim=1)
    kept = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, indices, True)
    kept.scatter_(1, labels.long()[:, None], True)
    others = logits.masked_fill(kept, float("-inf"))
    count = num_classes - kept.sum(1)
    rest = others.logsumexp(1) - count.clamp(min=1).log()
    return {"topk_indices": indices, "topk_logits": values, "gt_logit": logits.gather(1, labels.long()[:, None])[:, 0],
            "rest_logit": rest.masked_fill(count == 0, float("-inf"))}  # fmt: skip


@dataclass(frozen=True)
class Layout:
    """The shapes and dtypes of a cache's tensors (see the module docstring), in file order."""

    views: int
    num_samples: int
    num_classes: int
    top_k: int
    params: int
    dtype: torch.dtype
    streamed: bool = False

    @property
    def dense(self) -> bool:
        return self.top_k == self.num_classes

    def tensors(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        v, n, k = self.views, self.num_samples, self.top_k
        index = torch.int16 if self.num_classes <= torch.iinfo(torch.int16).max else torch.int32
        out = {"sample_index": ((n,), torch.int64), "label": ((n,), torch.int64),
               "aug_params": ((v, n, self.params), torch.int32 if self.streamed else torch.int16)}  # fmt: skip
        if self.dense:
            return {**out, "logits": ((v, n, k), self.dtype)}
        return {**out, "topk_indices": ((v, n, k), index), "topk_logits": ((v, n, k), self.dtype),
                "gt_logit": ((v, n), self.dtype), "rest_logit": ((v, n), self.dtype)}  # fmt: skip

    def bytes_per_view(self) -> int:
        """Bytes of one sample in one view: its logits, top-k classes and augmentation draws."""
        return sum(math.prod(shape[2:]) * dtype.itemsize for shape, dtype in self.tensors().values() if len(shape) > 1)


class Rows(Protocol):
    """A V×N×… tensor of a cache, read by (view, rows)."""

    shape: tuple[int, ...]
    dtype: torch.dtype

    def take(self, view: int, rows: torch.Tensor) -> torch.Tensor: ...


@dataclass
class MemoryRows:
    """A cache tensor held in memory (it fits the memory budget)."""

    tensor: torch.Tensor

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.tensor.dtype

    def take(self, view: int, rows: torch.Tensor) -> torch.Tensor:
        return self.tensor[view, rows.to(self.tensor.device)]


@dataclass
class FileRows:
    """A cache tensor left in its file: each read takes the asked rows of one view with ``os.pread``, one call
    per run of consecutive rows (the page cache keeps what was read; this process holds only the batch)."""

    path: str
    offset: int  # of the tensor's first byte in the file
    shape: tuple[int, ...]
    dtype: torch.dtype
    _fd: int | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:  # a DataLoader worker opens its own descriptor
        return {**self.__dict__, "_fd": None}

    def whole(self) -> torch.Tensor:
        """The tensor read whole into memory (straight into its buffer: never held twice)."""
        out = torch.empty(self.shape, dtype=self.dtype)
        buffer = memoryview(out.view(-1).view(torch.uint8).numpy())
        with open(self.path, "rb", buffering=0) as fh:
            fh.seek(self.offset)
            done = 0
            while done < len(buffer):  # a read returns at most about 2 GiB
                got = fh.readinto(buffer[done:])
                if not got:
                    raise KdtoolError(f"{self.path} ends inside its tensors: it is truncated")
                done += got
        return out

    def take(self, view: int, rows: torch.Tensor) -> torch.Tensor:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        row_bytes = math.prod(self.shape[2:]) * self.dtype.itemsize
        base = self.offset + view * self.shape[1] * row_bytes
        rows = rows.cpu().long()
        order = rows.argsort()
        ordered = rows[order]
        out = torch.empty(len(rows), row_bytes, dtype=torch.uint8)
        breaks = (torch.nonzero(ordered.diff() != 1)[:, 0] + 1).tolist()
        for start, stop in zip([0, *breaks], [*breaks, len(rows)], strict=True):
            if stop > start:
                data = os.pread(self._fd, (stop - start) * row_bytes, base + int(ordered[start]) * row_bytes)
                out[order[start:stop]] = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(stop - start, -1)
        return out.view(self.dtype).view(len(rows), *self.shape[2:])


def row_lookup(sample_index: torch.Tensor) -> torch.Tensor:
    """The row of each sample id in a cache of rows ``sample_index`` (−1: none), indexed by sample id."""
    lookup = torch.full((int(sample_index.max()) + 1 if len(sample_index) else 0,), -1, dtype=torch.long)
    lookup[sample_index] = torch.arange(len(sample_index))
    return lookup


def _header(path: Path) -> tuple[int, dict[str, Any]]:
    """The byte offset of a safetensors file's data and its header (already validated by ``safe_open``)."""
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        return 8 + size, json.loads(fh.read(size))


@dataclass
class TeacherCache:
    """An opened teacher cache; see the module docstring for its tensors. ``store`` holds the V×N×… tensors
    (in memory or in the file), ``sample_index`` and ``labels`` the N rows' sample ids and classes."""

    store: dict[str, Rows]
    sample_index: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    dataset: str
    data_options: dict[str, Any]
    teacher_run: str
    teacher_sha256: str
    cache_dtype: str
    extra: dict[str, str] = field(default_factory=dict)
    path: str = "(in memory)"  # the file it was opened from, for messages
    in_memory: bool = True

    @property
    def views(self) -> int:
        return int(self.store["aug_params"].shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.sample_index.shape[0])

    @property
    def top_k(self) -> int:
        return int(self.store["logits" if "logits" in self.store else "topk_logits"].shape[2])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def exact(self) -> bool:
        """Whether every loss replays as from the live teacher: k ≥ K − 1 (with one class left out, its rest
        logit is that class's own logit, or it is the ground truth, stored apart).

        With fewer, the other classes share one logit: their total mass is kept (at T = 1) but not their
        individual values, on which every KD loss's gradient depends (KD's ``p_s − p_t``, DKD's non-target
        part, DIST's correlations, standardisation's mean and spread)."""
        return self.top_k >= self.num_classes - 1

    def replay_line(self, augment: str) -> str:
        """How the cache stands for the teacher in a student run of ``--augment augment``, for its header line
        and ``config.json``."""
        k, n = self.top_k, self.num_classes
        line = f"top-{k} of {n} (approximate)" if not self.exact else f"all {n} logits (exact)"
        line += f", {self.cache_dtype}, " + ("in memory" if self.in_memory else "read from the file per batch")
        if any(name in MIXERS for name in parse_augment(augment)):
            line += "; mixup/cutmix mix its logits linearly, not the teacher's output on the mixed images"
        return line

    def check_exact(self, kd_loss: str, approximate: bool) -> None:
        """Refuse a top-k cache (k < K) unless ``approximate`` (``--approximate-cache``) accepts it, and refuse
        ``approximate`` for an exact cache (the option would not apply)."""
        k, n = self.top_k, self.num_classes
        if not self.exact and not approximate:
            raise KdtoolError(f"teacher cache {self.path} holds the top-{k} of {n} logits: --kd-loss {kd_loss} from it "
                              f"is not the live teacher's loss (the other {n - k} classes share one logit); rebuild it "
                              f"with cache-teacher --top-k {n} (the default), or pass --approximate-cache to accept "
                              f"the approximation")  # fmt: skip
        if self.exact and approximate:
            raise KdtoolError(f"--approximate-cache does not apply: teacher cache {self.path} holds all {n} logits "
                              f"and replays exactly; remove it")  # fmt: skip

    def aug_params(self, view: int, rows: torch.Tensor) -> torch.Tensor:
        """The augmentation draws (B×P, int64) of the samples at cache ``rows`` in ``view``."""
        return self.store["aug_params"].take(view, rows).long()

    def teacher_logits(self, view: int, rows: torch.Tensor) -> torch.Tensor:
        """The teacher's B×K float32 logits of the samples at cache ``rows`` in ``view``: all of them (k = K), or
        the top-k and the ground truth exact, every other class at its row's rest logit. Rows read from the file
        are checked as they come (a cache in memory was checked whole when opened): a logit that is not finite
        or a class out of range is a one-line KdtoolError."""
        parts = {name: rows_of.take(view, rows) for name, rows_of in self.store.items() if name != "aug_params"}
        if not self.in_memory:
            self._check(parts, f"view {view}")
        if "logits" in parts:
            return parts["logits"].float()
        dense = parts["rest_logit"].float()[:, None].expand(-1, self.num_classes).clone()
        dense.scatter_(1, self.labels.to(rows.device)[rows][:, None], parts["gt_logit"].float()[:, None])
        return dense.scatter_(1, parts["topk_indices"].long(), parts["topk_logits"].float())

    def _check(self, parts: Mapping[str, torch.Tensor], where: str) -> None:
        """Refuse damaged logits or classes (``parts``: the stored tensors, or some of their rows)."""
        logits = [parts[name] for name in ("logits", "topk_logits", "gt_logit") if name in parts]
        bad = not all(_every(t, lambda c: torch.isfinite(c).all()) for t in logits)
        if "topk_indices" in parts:
            bad = bad or not _every(parts["rest_logit"], lambda c: ~c.isnan().any()) or not _every(
                parts["topk_indices"], lambda c: ((c >= 0) & (c < self.num_classes)).all())  # fmt: skip
        if bad:
            raise KdtoolError(f"teacher cache {self.path} holds a NaN or infinite logit, or a class index outside "
                              f"0..{self.num_classes - 1}, in {where}: it is damaged; rebuild it")  # fmt: skip

    def to(self, device: torch.device) -> TeacherCache:
        """A copy whose in-memory tensors live on ``device`` (a training loop then reads them without host
        transfers); a cache read from its file stays there."""
        if not self.in_memory:
            return self
        moved = {name: MemoryRows(rows.tensor.to(device)) for name, rows in self.store.items()}
        return replace(self, store=moved, labels=self.labels.to(device))

    @cached_property
    def lookup(self) -> torch.Tensor:
        """The cache row of each sample id (−1: none), indexed by sample id."""
        return row_lookup(self.sample_index)

    def rows_of(self, sample_ids: torch.Tensor) -> torch.Tensor:
        """The cache row of each sample id (index in the training split as listed or loaded); a sample the cache
        lacks is a one-line KdtoolError."""
        sample_ids = sample_ids.cpu().long()
        rows = torch.full_like(sample_ids, -1)
        inside = (sample_ids >= 0) & (sample_ids < len(self.lookup))
        rows[inside] = self.lookup[sample_ids[inside]]
        missing = int((rows < 0).sum())
        if missing:
            first = int(sample_ids[rows < 0][0])
            raise KdtoolError(f"teacher cache {self.path} holds no views of {missing} of this run's {len(rows)} "
                              f"training samples (the first: sample {first})")  # fmt: skip
        return rows

    def check_labels(self, rows: torch.Tensor, labels: torch.Tensor) -> None:
        """Refuse, in one line, samples whose class (``labels``, in the cache's class order) is not the one the
        cache recorded for them: the data changed since it was made."""
        recorded = self.labels.to(rows.device)[rows]
        differ = recorded != labels.to(rows.device)
        if differ.any():
            i = int(differ.nonzero()[0, 0])
            raise KdtoolError(f"teacher cache {self.path} was made with sample {int(self.sample_index[int(rows[i])])} "
                              f"of class {self.class_names[int(recorded[i])]}, this run's data has it as "
                              f"{self.class_names[int(labels[i])]}: the data changed since it was made")  # fmt: skip

    def check_matches(self, options: Mapping[str, Any], dataset: str, class_names: list[str], num_samples: int) -> None:
        """Refuse, in one line, a cache made for other data: other dataset, class names, data options
        (:func:`data_options`) or number of training samples (``num_samples``)."""
        what = f"teacher cache {self.path}"
        if self.dataset != dataset:
            raise KdtoolError(f"{what} was made on {self.dataset}, this run's data is {dataset}")
        if self.class_names != list(class_names):
            raise KdtoolError(f"{what} has classes {self.class_names}, the data {list(class_names)}")
        for key, value in options.items():
            self._check_option(key, value)
        if self.num_samples != num_samples:
            raise KdtoolError(f"{what} holds {self.num_samples} training samples, this run's data has {num_samples}: "
                              f"the dataset changed since it was made")  # fmt: skip

    def check_augment(self, augment: Collection[str]) -> None:
        """Refuse, in one line, a run whose per-image augmentation (``augment``: names from
        :func:`~kdtool.data.augment.parse_augment`) is not the one that drew the cache's views: its stored
        choices would not fit the run's transform."""
        self._check_option("augment", per_image_augment(augment))

    def _check_option(self, key: str, value: Any) -> None:
        if self.data_options.get(key) != value:
            made, now = _option(key, self.data_options.get(key)), _option(key, value)
            raise KdtoolError(f"teacher cache {self.path} was made with {made}, this run has {now}: they must agree")

    # -- files -----------------------------------------------------------------------------
    @staticmethod
    def file_bytes(path: str | os.PathLike) -> int:
        """Bytes of a cache's tensors (what loading it whole would take)."""
        start, _ = _header(Path(path))
        return Path(path).stat().st_size - start

    @classmethod
    def open(cls, path: str | os.PathLike, budget: int | None = None) -> TeacherCache:
        """Open and validate a cache: its tensors loaded whole where they fit in ``budget`` bytes (None: always),
        else read from the file per batch. Every fault is a one-line KdtoolError naming the file."""
        path = Path(path)
        _, meta = read_safetensors(path, "teacher cache", tensors=False)
        try:
            if meta.get("format") == "kdtool.cache/1":
                raise KdtoolError("is a kdtool.cache/1 file (whole-file, float32), which this kdtool no longer reads: "
                                  "rebuild it with kdtool cache-teacher")  # fmt: skip
            check_format(meta, _METADATA, FORMAT, "teacher cache")
            cache = cls._opened(path, meta, budget is None or cls.file_bytes(path) <= budget)
        except KdtoolError as exc:
            raise KdtoolError(f"teacher cache {path}: {exc}") from exc
        if cache.in_memory:  # checked once, whole (one read from the file is checked per batch)
            cache._check({name: rows.tensor for name, rows in cache.store.items()}, "its tensors")
        return cache

    @classmethod
    def _opened(cls, path: Path, meta: dict[str, str], in_memory: bool) -> TeacherCache:
        names, options, (n, v, k) = _cache_metadata(meta)
        start, header = _header(path)
        params = header.get("aug_params", {}).get("shape", [0, 0, 0])[-1]
        layout = Layout(
            v, n, len(names), k, params, CACHE_DTYPES[meta["cache_dtype"]], options.get("loader") == "stream"
        )
        store: dict[str, Rows] = {}
        for name, (shape, dtype) in layout.tensors().items():
            entry = header.get(name)
            if entry is None:
                raise KdtoolError(f"lacks tensor {name}")
            if tuple(entry["shape"]) != shape or entry["dtype"] != _SAFETENSORS_DTYPES[dtype]:
                raise KdtoolError(f"{name} is {entry['dtype']} {tuple(entry['shape'])}, expected "
                                  f"{_SAFETENSORS_DTYPES[dtype]} {shape}")  # fmt: skip
            store[name] = FileRows(str(path), start + entry["data_offsets"][0], shape, dtype)
        with safe_open(str(path), framework="pt") as fh:  # a memory map: copied out, not kept
            index = {name: fh.get_tensor(name).clone() for name in ("sample_index", "label")}
        store = {name: rows for name, rows in store.items() if name not in index}
        if in_memory:  # it fits the budget: read whole, once, into this process's memory
            store = {name: MemoryRows(rows.whole()) for name, rows in store.items()}
        if ((index["label"] < 0) | (index["label"] >= len(names))).any():
            raise KdtoolError(f"label holds a class index outside 0..{len(names) - 1}")
        extra = {key: value for key, value in meta.items() if key not in _METADATA}
        return cls(store, index["sample_index"], index["label"], names, meta["dataset"], options, meta["teacher_run"],
                   meta["teacher_sha256"], meta["cache_dtype"], extra, str(path), in_memory)  # fmt: skip


def _cache_metadata(meta: dict[str, str]) -> tuple[list[str], dict[str, Any], tuple[int, int, int]]:
    """A cache file's class names, data options and (samples, views, top-k) from its metadata, checked; a
    malformed value is a one-line KdtoolError."""
    try:
        names, options = json.loads(meta["class_names"]), json.loads(meta["data_options"])
        n, v, k = int(meta["num_samples"]), int(meta["views"]), int(meta["top_k"])
    except ValueError as exc:
        raise KdtoolError(f"malformed metadata ({exc})") from exc
    if not isinstance(names, list) or not all(isinstance(c, str) for c in names) or not isinstance(options, dict):
        raise KdtoolError("class_names must be a JSON list of strings and data_options a JSON object")
    if meta["cache_dtype"] not in CACHE_DTYPES or not 1 <= k <= len(names):
        raise KdtoolError(f"cache_dtype {meta['cache_dtype']!r} or top_k {k} is not one kdtool writes")
    return names, options, (n, v, k)


# Elements checked at a time (16 MiB of float32): a cache loaded whole is checked in pieces, so the check's
# temporaries (torch.isfinite makes two, one of them the size of its input) never double what the budget allowed.
CHECK_CHUNK = 1 << 22


def _every(tensor: torch.Tensor, test: Callable[[torch.Tensor], torch.Tensor]) -> bool:
    """Whether ``test`` (a tensor → one boolean) holds for every piece of :data:`CHECK_CHUNK` elements of
    ``tensor``."""
    return all(bool(test(part)) for part in tensor.reshape(-1).split(CHECK_CHUNK))


class CacheWriter:
    """Writes a cache file of known :class:`Layout` piece by piece, never holding more than the rows given to
    :meth:`add`: the safetensors header first, then each batch's rows at their offsets (``os.pwrite``).

    ``path`` is a temporary file (:func:`kdtool.fileio.atomic_path`); a file some rows were never written to
    is refused by :meth:`close`."""

    def __init__(self, path: str | os.PathLike, layout: Layout, sample_index: torch.Tensor,
                 metadata: dict[str, str], create: bool = True) -> None:  # fmt: skip
        """``create``: write the header and size the file; else (another torchrun rank's writer) write rows
        into the file that rank 0 created with the same layout and metadata."""
        self.layout, self.path = layout, str(path)
        entries, offset = {}, 0
        for name, (shape, dtype) in layout.tensors().items():
            size = math.prod(shape) * dtype.itemsize
            entries[name] = {"dtype": _SAFETENSORS_DTYPES[dtype], "shape": list(shape),
                             "data_offsets": [offset, offset + size]}  # fmt: skip
            offset += size
        header = json.dumps({"__metadata__": {**metadata, "format": FORMAT}, **entries}).encode()
        header += b" " * (-len(header) % 8)  # safetensors pads its header to 8 bytes
        self.start, self.entries = 8 + len(header), entries
        self.fd = os.open(self.path, os.O_WRONLY | (os.O_CREAT if create else 0), 0o666)
        if create:
            os.ftruncate(self.fd, self.start + offset)
            os.pwrite(self.fd, len(header).to_bytes(8, "little") + header, 0)
            self._write("sample_index", 0, 0, sample_index.long())
        self.written = torch.zeros(layout.views, layout.num_samples, dtype=torch.bool)

    def _write(self, name: str, view: int, row: int, values: torch.Tensor) -> None:
        shape, dtype = self.layout.tensors()[name]
        row_bytes = math.prod(shape[2:]) * dtype.itemsize
        per_view = shape[1] if len(shape) > 1 else 0  # sample_index and label: one row per sample, no views
        offset = self.start + self.entries[name]["data_offsets"][0] + (view * per_view + row) * row_bytes
        os.pwrite(self.fd, values.to(dtype).contiguous().view(torch.uint8).numpy().tobytes(), offset)

    def add(
        self, view: int, rows: torch.Tensor, labels: torch.Tensor, params: torch.Tensor, logits: torch.Tensor
    ) -> None:
        """Store the classes, the augmentation draws (B×P) and the teacher's B×K ``logits`` of the samples at cache
        ``rows`` in ``view``; a logit the cache dtype cannot hold is a one-line KdtoolError."""
        rows, labels, logits = rows.cpu().long(), labels.cpu().long(), logits.detach().float().cpu()
        dtype = self.layout.dtype
        if torch.isfinite(logits).all() and not torch.isfinite(logits.to(dtype)).all():
            raise KdtoolError(f"a teacher logit ({float(logits.abs().max()):.3g}) is beyond {dtype}'s range: use "
                              f"--cache-dtype float32")  # fmt: skip
        parts = {"label": labels, "aug_params": params.cpu(), **compress_logits(logits, self.layout.top_k, labels)}
        order = rows.argsort()
        ordered = rows[order]
        breaks = (torch.nonzero(ordered.diff() != 1)[:, 0] + 1).tolist()
        for start, stop in zip([0, *breaks], [*breaks, len(rows)], strict=True):  # runs of consecutive rows
            for name, values in parts.items():
                self._write(name, view, int(ordered[start]), values[order[start:stop]])
        self.written[view, rows] = True

    def close(self) -> torch.Tensor:
        """Finish writing; returns which sample-views (V×N bool) this writer wrote."""
        os.close(self.fd)
        return self.written
