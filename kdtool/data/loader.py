"""The in-memory data path: the whole split lives on the training device as one uint8 tensor.

Batches are index slices of that tensor, augmented as a batch (random crop with zero padding,
horizontal flip, normalisation) instead of per sample through PIL. Every random choice of an
epoch comes from a generator seeded by ``(seed, epoch)``, so any epoch can be replayed exactly,
which is what makes resuming a run bit-identical. The choices are drawn per image as integer
parameters (:meth:`ImageBatchTransform.draw`) and then applied (:meth:`ImageBatchTransform.apply`), so
stored parameters replay an augmentation exactly (a teacher cache, :mod:`kdtool.distill.replay`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from kdtool.data.augment import cutout_at, cutout_draw, rand_augment_apply, rand_augment_draw
from kdtool.data.dataset import DatasetInfo, Split

# (batch of inputs, augmentation generator or None) -> what the model reads
BatchTransform = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


def crop_offsets(batch: int, padding: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Each image's random crop window in its zero-padded copy: 2×B (row, column offsets in 0..2p)."""
    return torch.randint(0, 2 * padding + 1, (2, batch), generator=generator, device=device)


def crop_at(images: torch.Tensor, padding: int, offsets: torch.Tensor) -> torch.Tensor:
    """Each image's window at ``offsets`` (2×B) of the zero-padded batch, back to the original size."""
    b, _, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    # A view of every h×w window (B×C×(2p+1)×(2p+1)×H×W, no copy); pick one window per image. Copying
    # whole windows is several times faster than gathering single pixels with four index tensors.
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)
    return windows[torch.arange(b, device=images.device), :, offsets[0], offsets[1]]


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random crop of a zero-padded batch, back to the original size (any dtype)."""
    if padding <= 0:
        return images
    return crop_at(images, padding, crop_offsets(images.shape[0], padding, generator, images.device))


def flip_draw(batch: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Which images to flip left-right (B booleans, each with probability ½)."""
    return torch.rand(batch, generator=generator, device=device) < 0.5


def flip_where(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """The images with ``flip`` (B) set, flipped left-right."""
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def random_hflip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image left-right with probability ½."""
    return flip_where(images, flip_draw(images.shape[0], generator, images.device))


@dataclass
class ImageBatchTransform:
    """uint8 N×C×H×W batch -> normalised float batch, with optional crop/flip, RandAugment and
    Cutout (side ``cutout`` pixels, 0 = off) augmentation."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int = 0
    hflip: bool = False
    randaugment: bool = False
    cutout: int = 0
    # device -> (mean, std) as 1×C×1×1 tensors, made once: building them per batch would copy them
    # from the host on every step of a GPU run
    _stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def for_dataset(cls, info: DatasetInfo, augment: Collection[str]) -> ImageBatchTransform:
        """``augment``: names from :func:`~kdtool.data.augment.parse_augment` (empty: none)."""
        if not augment:
            return cls(info.mean, info.std)
        cutout_size = info.image_size // 2 if "cutout" in augment else 0
        return cls(info.mean, info.std, info.crop_padding, info.hflip, "randaugment" in augment, cutout_size)

    @property
    def params_per_image(self) -> int:
        """Columns of :meth:`draw`: crop offsets (2), flip (1), RandAugment's choices (4), Cutout's centre (2),
        each where it is on, in that order."""
        return sum(self._widths())

    def draw(self, shape: torch.Size, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """Every random choice of the augmentation for a batch of ``shape`` (B×C×H×W), as B×P integers,
        in the order (and from the same generator draws) :meth:`__call__` makes them."""
        parts = self._draw(shape, generator, device)
        if self.crop_padding > 0:
            parts[0] = parts[0].T  # offsets are drawn 2×B
        columns = [part.long().reshape(shape[0], -1) for part in parts]
        return torch.cat(columns, dim=1) if columns else torch.zeros(shape[0], 0, dtype=torch.long, device=device)

    def apply(self, images: torch.Tensor, params: torch.Tensor | None) -> torch.Tensor:
        """Augment a uint8 batch with the choices ``params`` of :meth:`draw` (None: none), then normalise."""
        if params is None or params.shape[1] == 0:
            return self._apply(images, [])
        columns = list(params.long().split(self._widths(), dim=1))
        if self.crop_padding > 0:
            columns[0] = columns[0].T
        if self.hflip:
            flip = int(self.crop_padding > 0)
            columns[flip] = columns[flip][:, 0].bool()
        return self._apply(images, columns)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        parts = [] if generator is None else self._draw(images.shape, generator, images.device)
        return self._apply(images, parts)

    def _widths(self) -> list[int]:
        on = [(self.crop_padding > 0, 2), (self.hflip, 1), (self.randaugment, 4), (self.cutout > 0, 2)]
        return [width for enabled, width in on if enabled]

    def _draw(self, shape: torch.Size, generator: torch.Generator, device: torch.device) -> list[torch.Tensor]:
        """The choices of each augmentation that is on, in order, in the form :meth:`_apply` takes."""
        parts = []
        if self.crop_padding > 0:
            parts.append(crop_offsets(shape[0], self.crop_padding, generator, device))
        if self.hflip:
            parts.append(flip_draw(shape[0], generator, device))
        if self.randaugment:
            parts.append(rand_augment_draw(shape[0], generator, device))
        if self.cutout:
            parts.append(cutout_draw(shape, generator, device))
        return parts

    def _apply(self, images: torch.Tensor, parts: list[torch.Tensor]) -> torch.Tensor:
        """Crop, flip, RandAugment with ``parts`` (none: no augmentation), normalise, then Cutout."""
        choices = iter(parts)
        if parts:
            if self.crop_padding > 0:
                images = crop_at(images, self.crop_padding, next(choices))
            if self.hflip:
                images = flip_where(images, next(choices))
            if self.randaugment:
                images = rand_augment_apply(images, next(choices))
        if images.device not in self._stats:
            self._stats[images.device] = tuple(
                torch.tensor(v, device=images.device).view(1, -1, 1, 1) for v in (self.mean, self.std)
            )
        mean, std = self._stats[images.device]
        images = images.float().div_(255.0).sub_(mean).div_(std)
        if parts and self.cutout:
            images = cutout_at(images, self.cutout, next(choices))
        return images


def epoch_generator(seed: int, epoch: int, stream: int, device: torch.device) -> torch.Generator:
    """The generator of one (seed, epoch, purpose): replaying an epoch needs no saved RNG state. Stream 0
    shuffles; stream 1 + rank augments."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + epoch) * 1009 + stream)


def epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The shuffled order of ``n`` samples in ``epoch``, the same on every rank (and for the streaming
    loader, which draws it on the same device and reads it on the host)."""
    return torch.randperm(n, generator=epoch_generator(seed, epoch, 0, device), device=device)


def global_batches(n: int, batch_size: int, world_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each global batch of ``batch_size × world_size`` in an epoch's order; under torchrun a
    trailing batch too small to give every rank a sample is dropped, keeping ranks in step."""
    step = batch_size * world_size
    bounds = [(start, min(start + step, n)) for start in range(0, n, step)]
    if world_size > 1 and bounds and bounds[-1][1] - bounds[-1][0] < world_size:
        bounds.pop()
    return bounds


class BatchLoader:
    """Iterates seeded, shuffled (or ordered) batches of an in-memory split on ``device``.

    With ``world_size > 1`` (torchrun), every rank draws the same permutation, cuts it into global
    batches of ``batch_size × world_size`` and keeps every ``world_size``-th sample of each, so the
    ranks' batches together are exactly the global batch a single process would see. A trailing
    global batch too small to give every rank a sample is dropped, keeping ranks in step.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        transform: BatchTransform,
        device: torch.device,
        shuffle: bool = False,
        augment: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.inputs = split.inputs.to(device)
        self.labels = split.labels.to(device)
        self.batch_size = batch_size
        self.transform = transform
        self.device = device
        self.shuffle = shuffle
        self.augment = augment
        self.seed = seed
        self.rank = rank
        self.world_size = world_size

    def _global_batches(self) -> list[tuple[int, int]]:
        return global_batches(int(self.labels.shape[0]), self.batch_size, self.world_size)

    def __len__(self) -> int:
        return len(self._global_batches())

    def _generator(self, epoch: int, stream: int) -> torch.Generator:
        return epoch_generator(self.seed, epoch, stream, self.device)

    def augment_generator(self, epoch: int) -> torch.Generator | None:
        """This process's augmentation stream for ``epoch`` (None when the loader does not augment)."""
        # augmentation differs per rank, as it would per sample in one process
        return self._generator(epoch, 1 + self.rank) if self.augment else None

    def batch_indices(self, epoch: int = 0) -> Iterator[slice | torch.Tensor]:
        """The positions in the split of this process's batches of ``epoch``, in order: slices where
        the split is read in order by one process, else index tensors on the device."""
        n = int(self.labels.shape[0])
        order = None
        if self.shuffle:  # the same permutation on every rank
            order = epoch_order(n, self.seed, epoch, self.device)
        for start, stop in self._global_batches():
            if order is None and self.world_size == 1:
                yield slice(start, stop)
            else:
                idx = order[start:stop] if order is not None else torch.arange(start, stop, device=self.device)
                yield idx[self.rank :: self.world_size]

    def epoch(
        self, epoch: int = 0, augment_generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(inputs, labels)`` batches for one pass over the split.

        A caller that draws more randomness per batch (batch mixing) passes the epoch's
        :meth:`augment_generator` and shares that one stream with the transform.
        """
        augment_gen = self.augment_generator(epoch) if augment_generator is None else augment_generator
        for idx in self.batch_indices(epoch):
            yield self.transform(self.inputs[idx], augment_gen), self.labels[idx]

    def training_batches(
        self, epoch: int, augment_generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """:meth:`epoch`'s batches as ``(inputs, labels, teacher_logits)``: a plain split brings no teacher
        logits (None); a teacher cache's replay does (:class:`kdtool.distill.replay.ReplayLoader`)."""
        for x, y in self.epoch(epoch, augment_generator):
            yield x, y, None
