"""What a network reads (channels, square size, normalisation), and the conversion of a dataset's batches to it.

The data path always yields batches as the dataset stores them (its channels and size, normalised by its own
mean/std). A network that reads something else (a 224-px pretrained model, an RGB model on grey images)
gets an input adapter: a forward pre-hook that converts each batch on the device. Its saved weights stay
the plain network's, and a teacher converts the student's very batch for itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdtool.data.dataset import DatasetInfo
from kdtool.errors import KdtoolError


def stats_for(values: Sequence[float], channels: int) -> tuple[float, ...]:
    """Per-channel statistics for ``channels`` channels: a grey model takes the mean of RGB ones, an RGB
    model repeats a grey one."""
    values = tuple(float(v) for v in values)
    if len(values) == channels:
        return values
    if channels == 1:
        return (sum(values) / len(values),)
    if len(values) == 1:
        return values * channels
    raise KdtoolError(f"cannot map {len(values)}-channel statistics to {channels} channels")


@dataclass(frozen=True)
class ModelInput:
    """Images a network reads: ``channels`` × ``size`` × ``size``, normalised ``(x − mean) / std`` on the 0–1
    scale."""

    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of_dataset(cls, info: DatasetInfo) -> ModelInput:
        """Batches as the dataset's data path yields them."""
        return cls(info.channels, info.image_size, tuple(info.mean), tuple(info.std))

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ModelInput:
        """The ``model_input`` of a run's ``config.json``."""
        return cls(int(record["channels"]), int(record["size"]), tuple(record["mean"]), tuple(record["std"]))

    def to_record(self) -> dict[str, Any]:
        return {"channels": self.channels, "size": self.size, "mean": list(self.mean), "std": list(self.std)}

    def describe(self) -> str:
        return f"{self.channels}×{self.size}×{self.size}"


def convert_batch(images: torch.Tensor, source: ModelInput, target: ModelInput) -> torch.Tensor:
    """A float batch normalised for ``source`` as ``target`` reads it: back to the 0–1 scale, grey repeated to
    RGB (or RGB averaged to grey), resized (bilinear, antialiased when shrinking), normalised for ``target``."""
    if source == target:
        return images

    def column(values: Sequence[float]) -> torch.Tensor:
        return torch.tensor(values, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)

    images = images * column(source.std) + column(source.mean)
    if target.channels != source.channels:
        if source.channels == 1:
            images = images.expand(-1, target.channels, -1, -1)
        elif target.channels == 1:
            images = images.mean(1, keepdim=True)
        else:
            raise KdtoolError(f"a network reading {target.channels}-channel images cannot read "
                              f"{source.channels}-channel ones")  # fmt: skip
    if images.shape[-1] != target.size or images.shape[-2] != target.size:
        shrink = target.size < images.shape[-1]
        images = F.interpolate(images, size=(target.size, target.size), mode="bilinear", align_corners=False,
                               antialias=shrink)  # fmt: skip
    return (images - column(target.mean)) / column(target.std)


@dataclass(frozen=True)
class InputAdapter:
    """A forward pre-hook converting a network's first argument from ``source`` to ``target``."""

    source: ModelInput
    target: ModelInput

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        return (convert_batch(args[0], self.source, self.target), *args[1:])


def attach_input_adapter(model: nn.Module, source: ModelInput, target: ModelInput) -> nn.Module:
    """Make ``model`` (which reads ``target``) take batches made for ``source``; returns ``model``."""
    if source != target:
        if source.channels not in (1, target.channels) and target.channels != 1:
            raise KdtoolError(f"a network reading {target.channels}-channel images cannot read "
                              f"{source.channels}-channel ones")  # fmt: skip
        model.register_forward_pre_hook(InputAdapter(source, target))
    return model
