"""In-memory dataset containers shared by every data source."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import torch

from kdtool.errors import KdtoolError


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a target need to know about a dataset.

    ``kind`` is ``"image"`` or ``"text"``. Images are sized by ``channels``/``image_size`` and
    normalised by ``mean``/``std``; text is token ids (``vocab_size`` entries, at most ``max_len``
    tokens a text) and leaves the image fields empty.
    """

    name: str
    class_names: tuple[str, ...]
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool = False
    crop_padding: int = 4
    kind: str = "image"
    vocab_size: int = 0
    max_len: int = 0

    def describe(self) -> str:
        """``fashion-mnist (1×28 px images)`` or ``goemotions-ekman (text)``: the data in words."""
        shape = "text" if self.kind == "text" else f"{self.channels}×{self.image_size} px images"
        return f"{self.name} ({shape})"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def from_record(cls, record: dict) -> DatasetInfo:
        """The info of a run's ``config.json`` ``dataset_info`` (lists back to tuples, extra keys ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in record.items() if k in known}
        return cls(**values)


@dataclass
class Split:
    """One split as tensors: ``inputs`` (uint8 N×C×H×W images, or int64 N×L right-padded token ids)
    and ``labels`` (int64, N). ``ids`` (int64, N): each sample's index in the split as the dataset
    loaded it, before any subset (None: this is that split, 0..N−1); a teacher cache is keyed by them."""

    inputs: torch.Tensor
    labels: torch.Tensor
    ids: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def sample_ids(self) -> torch.Tensor:
        """Each sample's index in the split as loaded (see the class docstring)."""
        return torch.arange(len(self)) if self.ids is None else self.ids

    def take(self, index: torch.Tensor) -> Split:
        return Split(self.inputs[index], self.labels[index], self.sample_ids()[index])

    def random_subset(self, n: int, seed: int) -> Split:
        """The first ``n`` samples of a seeded permutation (all of them if ``n`` ≥ len)."""
        if n >= len(self):
            return self
        g = torch.Generator().manual_seed(seed)
        return self.take(torch.randperm(len(self), generator=g)[:n].sort().values)


def stratified_index(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded ``fraction`` of each class (``round(fraction·n_c)``, at least one)."""
    g = torch.Generator().manual_seed(seed)
    kept = []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().flatten()
        n = max(1, int(fraction * len(members) + 0.5))
        kept.append(members[torch.randperm(len(members), generator=g)[:n]])
    return torch.cat(kept).sort().values if kept else labels.new_zeros(0)


def long_tail_counts(n_max: int, num_classes: int, ratio: float) -> list[int]:
    """Per-class training counts of the CIFAR-LT exponential profile (Cui et al., CVPR 2019):
    class i of K keeps ``⌊n_max · ρ^(−i/(K−1))⌋`` samples."""
    return [math.floor(n_max * ratio ** (-i / (num_classes - 1))) for i in range(num_classes)]


def class_counts(labels: torch.Tensor, num_classes: int) -> list[int]:
    """Samples of each of the ``num_classes`` classes in ``labels``."""
    return torch.bincount(labels.cpu(), minlength=num_classes).tolist()


@dataclass
class Dataset:
    info: DatasetInfo
    train: Split
    test: Split
    extras: dict = field(default_factory=dict)
    validation: Split | None = None  # an official validation split, where the dataset has one

    def subset_classes(self, indices: list[int]) -> Dataset:
        """Only the samples of the kept classes, relabelled 0..len(indices)-1 in the given order."""
        remap = torch.full((self.info.num_classes,), -1, dtype=torch.long)
        remap[torch.as_tensor(indices)] = torch.arange(len(indices))

        def restrict(split: Split) -> Split:
            kept = split.take((remap[split.labels] >= 0).nonzero().flatten())
            return replace(kept, labels=remap[kept.labels])

        info = replace(self.info, class_names=tuple(self.info.class_names[i] for i in indices))
        validation = None if self.validation is None else restrict(self.validation)
        return replace(self, info=info, train=restrict(self.train), test=restrict(self.test), validation=validation)

    def sample_fraction(self, fraction: float, seed: int) -> Dataset:
        """A copy whose training split keeps ``fraction`` of each class (seeded); the test split is unchanged.

        Each class keeps ``round(fraction · n_c)`` samples, but at least one, so no class disappears.
        """
        if not 0.0 < fraction <= 1.0:
            raise KdtoolError(f"--sample-fraction must be in (0, 1], got {fraction}")
        if fraction == 1.0:
            return self
        return replace(self, train=self.train.take(stratified_index(self.train.labels, fraction, seed)))

    def with_validation(self, fraction: float, seed: int) -> Dataset:
        """Hold out a stratified, seeded ``fraction`` of the training split as ``validation``.

        A dataset with an official validation split keeps it (whatever ``fraction``); otherwise
        ``fraction == 0`` means no validation at all. The test split is never touched.
        """
        if self.validation is not None:
            return self
        if fraction <= 0.0:
            return self
        held = stratified_index(self.train.labels, fraction, seed)
        rest = torch.ones(len(self.train), dtype=torch.bool)
        rest[held] = False
        return replace(self, train=self.train.take(rest.nonzero().flatten()), validation=self.train.take(held))

    def long_tailed(self, ratio: float, seed: int) -> Dataset:
        """A copy whose training split follows the long-tailed profile :func:`long_tail_counts` with
        imbalance ratio ``ratio`` (n_max: the largest class count; a seeded choice within each class).

        Validation and test splits are untouched: hold the validation split out first, so it stays balanced.
        """
        k = self.info.num_classes
        have = class_counts(self.train.labels, k)
        want = [min(n, c) for n, c in zip(long_tail_counts(max(have), k, ratio), have, strict=True)]
        if min(want) == 0:
            rarest = self.info.class_names[want.index(0)]
            raise KdtoolError(f"--imbalance-ratio {ratio:g} leaves class {rarest!r} without training samples "
                              f"({max(have)} in the largest class): give a smaller ratio")  # fmt: skip
        g = torch.Generator().manual_seed(seed)
        kept = []
        for c, n in enumerate(want):
            members = (self.train.labels == c).nonzero().flatten()
            kept.append(members[torch.randperm(len(members), generator=g)[:n]])
        return replace(self, train=self.train.take(torch.cat(kept).sort().values))

    def limited(self, limit_train: int | None, limit_test: int | None, seed: int) -> Dataset:
        """A copy with at most ``limit_train`` / ``limit_test`` samples (seeded random choice)."""
        for flag, value in (("--limit-train", limit_train), ("--limit-test", limit_test)):
            if value is not None and value <= 0:
                raise KdtoolError(f"{flag} must be a positive number of samples, got {value}")
        train = self.train if limit_train is None else self.train.random_subset(limit_train, seed)
        test = self.test if limit_test is None else self.test.random_subset(limit_test, seed + 1)
        return replace(self, train=train, test=test)
