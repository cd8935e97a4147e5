"""The in-memory data path: the whole split lives on the training device as one uint8 tensor.

Batches are index slices of that tensor, augmented as a batch (random crop with zero padding,
horizontal flip, normalisation) instead of per sample through PIL. Every random choice of an
epoch comes from a generator seeded by ``(seed, epoch)``, so any epoch can be replayed exactly,
which is what makes resuming a run bit-identical.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdtool.data.dataset import DatasetInfo, Split


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random crop of a zero-padded batch, back to the original size (any dtype)."""
    if padding <= 0:
        return images
    b, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator, device=images.device)
    rows = offsets[0, :, None] + torch.arange(h, device=images.device)  # B×H
    cols = offsets[1, :, None] + torch.arange(w, device=images.device)  # B×W
    batch_idx = torch.arange(b, device=images.device)[:, None, None, None]
    chan_idx = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch_idx, chan_idx, rows[:, None, :, None], cols[:, None, None, :]]


def random_hflip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image left-right with probability ½."""
    flip = torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


@dataclass
class ImageBatchTransform:
    """uint8 N×C×H×W batch -> normalised float batch, with optional crop/flip augmentation."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int = 0
    hflip: bool = False

    @classmethod
    def for_dataset(cls, info: DatasetInfo, augment: bool) -> ImageBatchTransform:
        if not augment:
            return cls(info.mean, info.std)
        return cls(info.mean, info.std, info.crop_padding, info.hflip)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if generator is not None:
            images = random_crop(images, self.crop_padding, generator)
            if self.hflip:
                images = random_hflip(images, generator)
        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
        return images.float().div_(255.0).sub_(mean).div_(std)


class BatchLoader:
    """Iterates seeded, shuffled (or ordered) batches of an in-memory split on ``device``."""

    def __init__(
        self,
        split: Split,
        batch_size: int,
        transform: ImageBatchTransform,
        device: torch.device,
        shuffle: bool = False,
        augment: bool = False,
        seed: int = 0,
    ) -> None:
        self.inputs = split.inputs.to(device)
        self.labels = split.labels.to(device)
        self.batch_size = batch_size
        self.transform = transform
        self.device = device
        self.shuffle = shuffle
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return -(-int(self.labels.shape[0]) // self.batch_size)

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    def _generator(self, epoch: int) -> torch.Generator:
        # One stream per (seed, epoch): replaying an epoch needs no saved RNG state.
        return torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + epoch)

    def epoch(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(inputs, labels)`` batches for one pass over the split."""
        n = self.num_samples
        generator = self._generator(epoch) if (self.shuffle or self.augment) else None
        order = torch.randperm(n, generator=generator, device=self.device) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                x, y = self.inputs[start : start + self.batch_size], self.labels[start : start + self.batch_size]
            else:
                idx = order[start : start + self.batch_size]
                x, y = self.inputs[idx], self.labels[idx]
            yield self.transform(x, generator if self.augment else None), y
