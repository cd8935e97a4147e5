"""One entry point for every dataset name a user can type."""

from __future__ import annotations

import os

from kdtool.data.dataset import Dataset
from kdtool.data.embedded import load_embedded_fashion_mnist
from kdtool.data.shards import is_wds, load_shards
from kdtool.data.text import Vocabulary, is_text_dataset, load_text_dataset
from kdtool.data.vision import TORCHVISION_SETS, list_imagefolder, load_imagefolder, load_torchvision
from kdtool.errors import KdtoolError, unknown_choice

DATASET_NAMES = (
    "fashion-mnist", "mnist", "cifar10", "cifar100", "svhn", "imagefolder:PATH", "wds:PATTERN",
    "goemotions", "goemotions-ekman", "text:PATH",
)  # fmt: skip


def _unknown(spec: str) -> KdtoolError:
    return unknown_choice("dataset", spec, DATASET_NAMES)


def stored_image_size(spec: str, image_size: int = 64) -> int:
    """The square size a dataset's images are stored at (``image_size`` for ``imagefolder:``), without loading it."""
    if spec.startswith("imagefolder:") or is_wds(spec):
        return image_size
    if spec in TORCHVISION_SETS:
        return TORCHVISION_SETS[spec][2]
    raise KdtoolError(f"{spec} is not an image dataset") if is_text_dataset(spec) else _unknown(spec)


def load_dataset(
    spec: str,
    data_root: str | os.PathLike | None = None,
    download: bool = False,
    image_size: int = 64,
    vocab_size: int = 20000,
    max_len: int = 128,
    vocabulary: Vocabulary | None = None,
    stream: bool = False,
    val_shards: str | None = None,
    class_names: str | None = None,
    skip_bad: bool = False,
) -> Dataset:
    """Load a dataset by name.

    ``fashion-mnist`` is read from the copy embedded in kdtool unless ``data_root`` is given;
    the other torchvision sets need ``data_root``; ``imagefolder:PATH`` reads a folder tree.
    Text (``goemotions``, ``goemotions-ekman`` embedded, ``text:PATH``) is encoded with ``vocabulary``,
    or with one of ``vocab_size`` entries built from its training split, cut at ``max_len`` tokens.
    ``stream``: an ``imagefolder:`` tree is listed as files, not decoded (:mod:`kdtool.data.stream`);
    ``wds:PATTERN`` shards (:mod:`kdtool.data.shards`) are always streamed, with ``val_shards``,
    ``class_names`` and ``skip_bad`` (incomplete samples skipped, else refused).
    """
    if is_text_dataset(spec):
        return load_text_dataset(spec, vocab_size, max_len, vocabulary)
    if is_wds(spec):
        return load_shards(spec, val_shards, class_names, image_size, skip_bad)
    if spec.startswith("imagefolder:"):
        path = spec.removeprefix("imagefolder:")
        return list_imagefolder(path, image_size) if stream else load_imagefolder(path, image_size)
    if spec == "fashion-mnist" and data_root is None:
        return load_embedded_fashion_mnist()
    if spec in TORCHVISION_SETS:
        return load_torchvision(spec, data_root, download)
    raise _unknown(spec)
