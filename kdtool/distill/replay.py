"""Replaying a teacher cache: epoch e shows view ``e mod V`` of every sample, augmented with exactly the
draws stored for it, together with the teacher's logits of that view.

In-memory data: :class:`ReplayLoader`, a :class:`~kdtool.data.BatchLoader` whose batches apply the stored
choices. Streamed data: the streaming loader's workers apply the stored crop box and flip of each sample id
(:class:`ReplaySampleTransform`) and the main process reads the batch's logits by sample id
(:class:`StreamReplay`), so batches, workers, ranks and resume are the stream path's own. Shuffling and batch
mixing still come from the student's own seeded generators.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass

import torch

from kdtool.data.dataset import Split
from kdtool.data.loader import BatchLoader, BatchTransform
from kdtool.data.stream import PARAMS, BadSample, SampleTransform, StreamBatches
from kdtool.distill.cache import Rows, TeacherCache


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
        cache: TeacherCache,
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
        self.rows = rows.to(device) if self.cache.in_memory else rows

    def _replayed(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        view = epoch % self.cache.views
        for idx in self.batch_indices(epoch):
            rows = self.rows[idx.to(self.rows.device)]
            params = self.cache.aug_params(view, rows).to(self.device)
            x = self.inputs[idx]
            x = self.transform.apply(x, params) if params.shape[1] else self.transform(x, None)
            yield x, self.labels[idx], self.cache.teacher_logits(view, rows).to(self.device)

    def epoch(
        self, epoch: int = 0, augment_generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y, _ in self._replayed(epoch):
            yield x, y

    def training_batches(
        self, epoch: int, augment_generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        yield from self._replayed(epoch)


@dataclass
class ReplaySampleTransform:
    """The stream path's per-sample transform with a cache's draws: epoch e's image of a sample is view e mod V
    of its stored crop box and flip (:data:`~kdtool.data.stream.PARAMS`), applied as
    :meth:`SampleTransform.apply` does. An image of another size than the one the box was drawn on is a
    fatal :class:`BadSample` (the data changed): a worker never raises."""

    sample: SampleTransform
    params: Rows  # the cache's aug_params (V×N×7), in memory or in its file
    lookup: torch.Tensor  # sample id -> cache row (checked beforehand to hold every sample of the run)
    path: str

    @property
    def size(self) -> int:
        return self.sample.size

    def __call__(self, image: torch.Tensor, epoch: int, sample_id: int) -> tuple[torch.Tensor, tuple] | BadSample:
        view = epoch % self.params.shape[0]
        params = tuple(self.params.take(view, self.lookup[sample_id : sample_id + 1])[0].tolist())
        drawn_on, size = params[len(PARAMS) - 2 :], tuple(image.shape[-2:])
        if drawn_on != size:
            why = f"is {size[0]}×{size[1]} pixels, but teacher cache {self.path} drew its crop on a "
            why += f"{drawn_on[0]}×{drawn_on[1]} image"
            fix = "the data changed since the cache was made; rebuild it (kdtool cache-teacher)"
            return BadSample("", why, fatal=True, fix=fix)
        return self.sample.apply(image, params), params


@dataclass
class StreamReplay:
    """A cache's logits for a streamed batch, found by sample id; its labels (the student's classes, mapped to the
    cache's by ``class_index``; None: the same classes) checked against the cache's."""

    cache: TeacherCache
    class_index: torch.Tensor | None = None

    def teacher_logits(self, epoch: int, sample_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        rows = self.cache.rows_of(sample_ids)
        labels = labels.cpu()
        self.cache.check_labels(rows, labels if self.class_index is None else self.class_index[labels])
        return self.cache.teacher_logits(epoch % self.cache.views, rows)


def replay_stream(loader: StreamBatches, cache: TeacherCache, class_names: list[str]) -> None:
    """Make a streamed training ``loader`` of the student's ``class_names`` replay ``cache``: its workers apply
    the stored draws and its batches bring the cached logits."""
    same = list(class_names) == cache.class_names
    index = None if same else torch.tensor([cache.class_names.index(name) for name in class_names])
    loader.replay(lambda sample: ReplaySampleTransform(sample, cache.store["aug_params"], cache.lookup, cache.path),
                  StreamReplay(cache, index))  # fmt: skip
