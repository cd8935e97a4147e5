"""The teacher cache artifact (format ``kdtool.cache/1``): a teacher's logits over V augmented views of
every training sample, stored once, replayed by students instead of running the teacher.

One safetensors file, for N samples, V views, top-k of K classes:

- ``aug_params`` (V×N×P int16): what the augmentation drew for each sample in each view
  (:meth:`kdtool.data.ImageBatchTransform.draw`: crop offsets, flip, ...; P = 0 without augmentation);
- ``topk_indices`` (V×N×k int16, int32 from K > 32767) and ``topk_logits`` (V×N×k float32): the teacher's
  k largest logits and their classes;
- ``rest_logit`` (V×N float32): one logit standing for each of the K−k other classes,
  ``logsumexp(others) − log(K−k)``, so the softmax keeps their total mass exactly (−inf when k = K);
- ``sample_index`` (N int64): each sample's index in the dataset's training split as loaded, so a
  student's subset (classes, fraction, validation hold-out) finds its samples.

Metadata (strings): ``format``, ``teacher_run``, ``teacher_sha256`` (of its weights), ``dataset``,
``class_names`` (JSON), ``num_samples``, ``views``, ``top_k``, ``data_options`` (JSON: dataset, image
size, augmentation, limit, seed), ``created_by``. Loading validates all of it and never unpickles.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from kdtool.data.augment import MIXERS, parse_augment
from kdtool.errors import KdtoolError
from kdtool.fileio import atomic_write, check_format, read_safetensors

FORMAT = "kdtool.cache/1"
_TENSORS = ("aug_params", "topk_indices", "topk_logits", "rest_logit", "sample_index")
_METADATA = ("format", "teacher_run", "teacher_sha256", "dataset", "class_names", "num_samples", "views", "top_k",
             "data_options", "created_by")  # fmt: skip


def data_options(
    dataset: str, image_size: int, augment: str, limit_train: int | None, seed: int, text: bool
) -> dict[str, Any]:
    """The options that decide which samples a cache holds and how its views were augmented.

    ``augment`` keeps the per-image augmentations only (batch mixing is the student's own);
    ``image_size`` counts for ``imagefolder:`` data only, and the seed only where it picks the
    ``limit_train`` samples (the views' own draws are stored, whatever seed made them)."""
    return {
        "dataset": dataset,
        "image_size": image_size if dataset.startswith("imagefolder:") else None,
        "augment": "none" if text else per_image_augment(parse_augment(augment)),
        "limit_train": limit_train,
        "seed": seed if limit_train is not None else None,
    }


def per_image_augment(augment: Collection[str]) -> str:
    """The per-image part of ``augment`` (names from :func:`~kdtool.data.augment.parse_augment`) as a cache
    records it: ``none``, or the names joined by commas; batch mixing is left out (the student's own)."""
    return ",".join(name for name in augment if name not in MIXERS) or "none"


def _option(key: str, value: Any) -> str:
    """A data option as typed: ``--limit-train 256``, or ``no --limit-train`` when unset."""
    flag = "--" + key.replace("_", "-")
    return f"no {flag}" if value is None else f"{flag} {value}"


def compress_logits(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """B×K logits -> (top-k classes, their logits, one rest logit per row keeping the others' total mass)."""
    num_classes = logits.shape[1]
    values, indices = logits.float().topk(top_k, dim=1)
    if top_k == num_classes:
        return indices, values, torch.full((logits.shape[0],), float("-inf"))
    others = logits.float().scatter(1, indices, float("-inf"))
    rest = others.logsumexp(1) - math.log(num_classes - top_k)
    return indices, values, rest


@dataclass
class TeacherCache:
    """A loaded (or freshly built) teacher cache; see the module docstring for the fields."""

    aug_params: torch.Tensor
    topk_indices: torch.Tensor
    topk_logits: torch.Tensor
    rest_logit: torch.Tensor
    sample_index: torch.Tensor
    class_names: list[str]
    dataset: str
    data_options: dict[str, Any]
    teacher_run: str
    teacher_sha256: str
    extra: dict[str, str] = field(default_factory=dict)
    path: str = "(in memory)"  # the file it was loaded from, for messages

    @property
    def views(self) -> int:
        return int(self.topk_logits.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.topk_logits.shape[1])

    @property
    def top_k(self) -> int:
        return int(self.topk_logits.shape[2])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def exact(self) -> bool:
        """Whether every loss replays as from the live teacher: k ≥ K − 1 (with one class left out, its rest
        logit is that class's own logit).

        With fewer, the other classes share one logit: their total mass is kept (at T = 1) but not their
        individual values, on which every KD loss's gradient depends (KD's ``p_s − p_t``, DKD's non-target
        part, DIST's correlations, standardisation's mean and spread)."""
        return self.top_k >= self.num_classes - 1

    def replay_line(self, augment: str) -> str:
        """How the cache stands for the teacher in a student run of ``--augment augment``, for its header line
        and ``config.json``."""
        k, n = self.top_k, self.num_classes
        line = f"top-{k} of {n} (approximate)" if not self.exact else f"all {n} logits (exact)"
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

    def to(self, device: torch.device) -> TeacherCache:
        """A copy whose tensors live on ``device`` (a training loop then reads them without host transfers)."""
        moved = {name: getattr(self, name).to(device) for name in _TENSORS}
        return dataclasses.replace(self, **moved)

    def teacher_logits(self, view: int, rows: torch.Tensor) -> torch.Tensor:
        """The teacher's B×K logits of the samples at ``rows`` (cache rows) in ``view``: the top-k exact,
        every other class at its row's rest logit."""
        dense = self.rest_logit[view, rows, None].expand(-1, self.num_classes).clone()
        return dense.scatter_(1, self.topk_indices[view, rows].long(), self.topk_logits[view, rows])

    def rows_of(self, sample_ids: torch.Tensor) -> torch.Tensor:
        """The cache row of each sample id (index in the training split as loaded); a sample the cache
        lacks is a one-line KdtoolError."""
        lookup = torch.full((int(max(self.sample_index.max(), sample_ids.max())) + 1,), -1, dtype=torch.long)
        lookup[self.sample_index] = torch.arange(self.num_samples)
        rows = lookup[sample_ids]
        missing = int((rows < 0).sum())
        if missing:
            first = int(sample_ids[rows < 0][0])
            raise KdtoolError(f"teacher cache {self.path} holds no views of {missing} of this run's {len(rows)} "
                              f"training samples (the first: sample {first})")  # fmt: skip
        return rows

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
    def metadata(self) -> dict[str, str]:
        from kdtool import __version__

        return {
            **self.extra,
            "format": FORMAT,
            "teacher_run": self.teacher_run,
            "teacher_sha256": self.teacher_sha256,
            "dataset": self.dataset,
            "class_names": json.dumps(self.class_names),
            "num_samples": str(self.num_samples),
            "views": str(self.views),
            "top_k": str(self.top_k),
            "data_options": json.dumps(self.data_options),
            "created_by": f"kdtool {__version__}",
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the cache atomically; class indices as int16 where K allows, augmentation choices as int16."""
        index_dtype = torch.int16 if self.num_classes <= torch.iinfo(torch.int16).max else torch.int32
        tensors = {
            "aug_params": self.aug_params.to(torch.int16).contiguous(),
            "topk_indices": self.topk_indices.to(index_dtype).contiguous(),
            "topk_logits": self.topk_logits.float().contiguous(),
            "rest_logit": self.rest_logit.float().contiguous(),
            "sample_index": self.sample_index.long().contiguous(),
        }
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=self.metadata()))

    @classmethod
    def load(cls, path: str | os.PathLike) -> TeacherCache:
        """Read and validate a cache; every fault is a one-line KdtoolError naming the file."""
        path = Path(path)
        tensors, meta = read_safetensors(path, "teacher cache")
        try:
            return dataclasses.replace(cls._from_contents(tensors, meta), path=str(path))
        except KdtoolError as exc:
            raise KdtoolError(f"teacher cache {path}: {exc}") from exc

    @classmethod
    def _from_contents(cls, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> TeacherCache:
        check_format(meta, _METADATA, FORMAT, "teacher cache")
        lacking = [k for k in _TENSORS if k not in tensors]
        if lacking:
            raise KdtoolError(f"lacks tensor {', '.join(lacking)}")
        try:
            names, options = json.loads(meta["class_names"]), json.loads(meta["data_options"])
            n, v, k = int(meta["num_samples"]), int(meta["views"]), int(meta["top_k"])
        except ValueError as exc:
            raise KdtoolError(f"malformed metadata ({exc})") from exc
        if not isinstance(names, list) or not all(isinstance(c, str) for c in names) or not isinstance(options, dict):
            raise KdtoolError("class_names must be a JSON list of strings and data_options a JSON object")
        params, indices, logits = tensors["aug_params"], tensors["topk_indices"], tensors["topk_logits"]
        rest, ids = tensors["rest_logit"], tensors["sample_index"]
        shapes = {"topk_indices": (v, n, k), "topk_logits": (v, n, k), "rest_logit": (v, n), "sample_index": (n,)}
        for name, shape in shapes.items():
            if tuple(tensors[name].shape) != shape:
                raise KdtoolError(f"{name} has shape {tuple(tensors[name].shape)}, expected {shape}")
        if params.ndim != 3 or tuple(params.shape[:2]) != (v, n):
            raise KdtoolError(f"aug_params has shape {tuple(params.shape)}, expected ({v}, {n}, P)")
        if not 1 <= k <= len(names) or ((indices < 0) | (indices >= len(names))).any():
            raise KdtoolError(f"top_k {k} or a class index outside 0..{len(names) - 1}")
        if not torch.isfinite(logits).all() or rest.isnan().any() or (k < len(names) and rest.isinf().any()):
            raise KdtoolError("holds a NaN or infinite logit")
        extra = {key: value for key, value in meta.items() if key not in _METADATA}
        return cls(params, indices, logits, rest, ids, names, meta["dataset"], options, meta["teacher_run"],
                   meta["teacher_sha256"], extra)  # fmt: skip
