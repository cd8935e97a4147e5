"""torchvision datasets and ImageFolder trees, loaded once into uint8 tensors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from kdtool.data.dataset import Dataset, DatasetInfo, Split
from kdtool.data.stream import check_pixels
from kdtool.errors import KdtoolError

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

# name -> (torchvision class name, channels, size, mean, std, hflip)
TORCHVISION_SETS: dict[str, tuple[str, int, int, tuple, tuple, bool]] = {
    "mnist": ("MNIST", 1, 28, (0.1307,), (0.3081,), False),
    "fashion-mnist": ("FashionMNIST", 1, 28, (0.2860,), (0.3530,), False),
    "cifar10": ("CIFAR10", 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True),
    "cifar100": ("CIFAR100", 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True),
    "svhn": ("SVHN", 3, 32, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), False),
}


def _as_nchw_uint8(data) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(data))
    if tensor.ndim == 3:  # N×H×W grey
        return tensor.unsqueeze(1).contiguous()
    if tensor.shape[-1] == 3:  # N×H×W×C (CIFAR)
        return tensor.permute(0, 3, 1, 2).contiguous()
    return tensor.contiguous()  # already N×C×H×W (SVHN)


def _torchvision_split(cls, root: Path, train: bool, download: bool, name: str) -> tuple[Split, list]:
    kwargs = {"split": "train" if train else "test"} if name == "svhn" else {"train": train}
    try:
        ds = cls(root=str(root), download=download, **kwargs)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted..."
        hint = "check --data-root" if download else "add --download to fetch it, or check --data-root"
        raise KdtoolError(f"{name} not found under {root}: {hint}") from exc
    except OSError as exc:  # download failed (offline) or unreadable files
        raise KdtoolError(f"could not read or download {name} under {root}: {exc.strerror or exc}") from exc
    labels = getattr(ds, "targets", None)
    if labels is None:
        labels = ds.labels
    classes = list(getattr(ds, "classes", [str(i) for i in range(10)]))
    return Split(_as_nchw_uint8(ds.data), torch.as_tensor(np.asarray(labels), dtype=torch.long)), classes


def load_torchvision(name: str, root: str | os.PathLike | None, download: bool) -> Dataset:
    """Load one of :data:`TORCHVISION_SETS` through torchvision's own loader."""
    import torchvision.datasets as tvd

    if root is None:
        raise KdtoolError(f"--data-root is required for {name} (add --download to fetch it there)")
    root = Path(root).expanduser()
    if not root.is_dir() and not download:
        raise KdtoolError(f"data root {root} does not exist: create it and add --download, or fix the path")
    root.mkdir(parents=True, exist_ok=True)
    cls_name, channels, size, mean, std, hflip = TORCHVISION_SETS[name]
    cls = getattr(tvd, cls_name)
    train, classes = _torchvision_split(cls, root, True, download, name)
    test, _ = _torchvision_split(cls, root, False, download, name)
    info = DatasetInfo(name, tuple(classes), channels, size, mean, std, hflip, crop_padding=4)
    return Dataset(info, train, test)


def _decode_folder(folder: Path, image_size: int, class_names: list[str] | None) -> tuple[Split, list[str]]:
    from torchvision import datasets, transforms

    tf = transforms.Compose(
        [transforms.Resize((image_size, image_size)), transforms.Lambda(lambda im: im.convert("RGB")),
         transforms.PILToTensor()]
    )  # fmt: skip
    try:
        ds = datasets.ImageFolder(str(folder), transform=tf)
    except (FileNotFoundError, RuntimeError) as exc:
        raise KdtoolError(f"no images found in {folder}: expected one sub-folder of images per class") from exc
    if class_names is not None and ds.classes != class_names:
        raise KdtoolError(f"class folders of {folder} differ from those of the training folder")
    for path, _ in ds.samples:  # headers only, before a decoder can be asked for a decompression bomb's pixels
        try:
            check_pixels(path)
        except ValueError as exc:
            raise KdtoolError(f"{path}: {exc}: remove it, or stream the folder (--loader stream) with "
                              f"--skip-bad-samples to skip it") from None  # fmt: skip
    loader = torch.utils.data.DataLoader(ds, batch_size=256, num_workers=min(4, os.cpu_count() or 1))
    images, labels = zip(*loader, strict=True)
    return Split(torch.cat(images), torch.cat(labels).long()), ds.classes


def _imagefolder_dirs(path: str | os.PathLike) -> tuple[Path, Path, Path]:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise KdtoolError(f"imagefolder:{path}: {root} {'is not a folder' if root.exists() else 'does not exist'}")
    train_dir = root / "train"
    test_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise KdtoolError(f"imagefolder:{root} needs train/ and val/ (or test/) sub-folders")
    return root, train_dir, test_dir


def _imagefolder_info(root: Path, classes: list[str], image_size: int) -> DatasetInfo:
    return DatasetInfo(
        f"imagefolder:{root}", tuple(classes), 3, image_size, _IMAGENET_MEAN, _IMAGENET_STD,
        hflip=True, crop_padding=max(1, image_size // 8),
    )  # fmt: skip


def load_imagefolder(path: str | os.PathLike, image_size: int) -> Dataset:
    """``PATH/train`` plus ``PATH/val`` or ``PATH/test``, one sub-folder per class, resized to a square."""
    root, train_dir, test_dir = _imagefolder_dirs(path)
    train, classes = _decode_folder(train_dir, image_size, None)
    test, _ = _decode_folder(test_dir, image_size, classes)
    return Dataset(_imagefolder_info(root, classes, image_size), train, test)


def list_imagefolder(path: str | os.PathLike, image_size: int) -> Dataset:
    """The same tree as :func:`load_imagefolder`, listed, not decoded: splits of files for the streaming path
    (:mod:`kdtool.data.stream`), in the same order and with the same classes."""
    from kdtool.data.stream import imagefolder_files

    root, train_dir, test_dir = _imagefolder_dirs(path)
    train, classes = imagefolder_files(train_dir, None)
    test, _ = imagefolder_files(test_dir, classes)
    return Dataset(_imagefolder_info(root, classes, image_size), train, test)
