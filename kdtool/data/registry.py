"""One entry point for every dataset name a user can type."""

from __future__ import annotations

import os

from kdtool.data.dataset import Dataset
from kdtool.data.embedded import load_embedded_fashion_mnist
from kdtool.data.vision import TORCHVISION_SETS, load_imagefolder, load_torchvision
from kdtool.errors import KdtoolError

DATASET_NAMES = ("fashion-mnist", "mnist", "cifar10", "cifar100", "svhn", "imagefolder:PATH")


def load_dataset(
    spec: str,
    data_root: str | os.PathLike | None = None,
    download: bool = False,
    image_size: int = 64,
) -> Dataset:
    """Load a dataset by name.

    ``fashion-mnist`` is read from the copy embedded in kdtool unless ``data_root`` is given;
    the other torchvision sets need ``data_root``; ``imagefolder:PATH`` reads a folder tree.
    """
    if spec.startswith("imagefolder:"):
        return load_imagefolder(spec.removeprefix("imagefolder:"), image_size)
    if spec == "fashion-mnist" and data_root is None:
        return load_embedded_fashion_mnist()
    if spec in TORCHVISION_SETS:
        return load_torchvision(spec, data_root, download)
    raise KdtoolError(f"unknown dataset {spec!r}: choose one of {', '.join(DATASET_NAMES)}")
