"""Replaying a teacher cache: the in-memory loader whose epoch e shows view ``e mod V`` of every sample,
augmented with exactly the choices stored for it, together with the teacher's logits of that view.

The cache (:class:`kdtool.distill.cache.TeacherCache`) is read through :class:`CachedViews` only, so the
data layer knows nothing of its file format. Shuffling and batch mixing still come from the student's
own seeded generators; only the per-image augmentation and the teacher's outputs are replayed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Protocol

import torch

from kdtool.data.dataset import Split
from kdtool.data.loader import BatchLoader, BatchTransform


class CachedViews(Protocol):
    """What the loader reads of a teacher cache: V×N×P augmentation choices and the teacher's logits."""

    aug_params: torch.Tensor

    @property
    def views(self) -> int: ...

    def to(self, device: torch.device) -> CachedViews: ...

    def check_augment(self, augment: Collection[str]) -> None: ...

    def teacher_logits(self, view: int, rows: torch.Tensor) -> torch.Tensor: ...


class ReplayLoader(BatchLoader):
    """A :class:`BatchLoader` whose batches replay ``cache``: ``rows`` (N) is the cache row of each sample
    of ``split``. ``augment`` is the run's augmentation (names from :func:`~kdtool.data.augment.parse_augment`,
    of which ``transform`` is made): its per-image part must be the one that drew the cache's views, or the
    loader is refused in one line (the stored choices would not fit ``transform``)."""

    def __init__(
        self,
        split: Split,
        batch_size: int,
        transform: BatchTransform,
        device: torch.device,
        cache: CachedViews,
        rows: torch.Tensor,
        augment: Collection[str] = (),
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        cache.check_augment(augment)
        super().__init__(split, batch_size, transform, device, shuffle, bool(augment), seed, rank, world_size)
        self.cache = cache.to(device)
        self.rows = rows.to(device)

    def _replayed(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        view = epoch % self.cache.views
        for idx in self.batch_indices(epoch):
            rows = self.rows[idx]
            params = self.cache.aug_params[view, rows]
            x = self.inputs[idx]
            x = self.transform.apply(x, params) if params.shape[1] else self.transform(x, None)
            yield x, self.labels[idx], self.cache.teacher_logits(view, rows)

    def epoch(
        self, epoch: int = 0, augment_generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y, _ in self._replayed(epoch):
            yield x, y

    def training_batches(
        self, epoch: int, augment_generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        yield from self._replayed(epoch)
