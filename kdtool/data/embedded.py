"""Datasets shipped inside the package, verified against their SHA-256 sums on every load."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from kdtool.data.dataset import Dataset, DatasetInfo, Split
from kdtool.data.idx import read_idx
from kdtool.errors import KdtoolError
from kdtool.fileio import sha256_file

EMBEDDED_ROOT = Path(__file__).parent / "embedded"

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

FASHION_MNIST_INFO = DatasetInfo(
    name="fashion-mnist",
    class_names=FASHION_MNIST_CLASSES,
    channels=1,
    image_size=28,
    mean=(0.2860,),
    std=(0.3530,),
    hflip=False,
    crop_padding=4,
)


def verify_checksums(folder: Path) -> None:
    """Check every file listed in ``folder/SHA256SUMS``; raise a KdtoolError naming the first bad one."""
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        raise KdtoolError(f"embedded data is incomplete: {sums} is missing; reinstall kdtool")
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        expected, name = line.split()
        path = folder / name
        if not path.is_file():
            raise KdtoolError(f"embedded data file {path} is missing; reinstall kdtool")
        if sha256_file(path) != expected:
            raise KdtoolError(f"embedded data file {path} fails its SHA-256 check; reinstall kdtool")


@cache
def _load_fashion_mnist(folder: Path) -> Dataset:
    verify_checksums(folder)

    def split(prefix: str) -> Split:
        images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz").unsqueeze(1)
        labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz").long()
        return Split(images, labels)

    return Dataset(FASHION_MNIST_INFO, split("train"), split("t10k"))


def load_embedded_fashion_mnist(folder: Path | None = None) -> Dataset:
    """All 70,000 Fashion-MNIST images as uint8 tensors (60,000 train, 10,000 test)."""
    return _load_fashion_mnist(folder or EMBEDDED_ROOT / "fashion-mnist")
