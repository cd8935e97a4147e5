"""The streaming data path: images decoded from their files batch by batch, in DataLoader workers.

For data bigger than memory (``--loader stream``). The split is a list of files (:class:`FileSplit`);
a map-style dataset decodes each one (torchvision's decoders, PIL as the fallback) and augments it
ImageNet-style (random-resized crop to ``--image-size`` and a horizontal flip for training, resize and
centre crop for evaluation). Every random choice of a sample is drawn from a generator seeded by
``(seed, epoch, sample id)``, never by the worker, and the epoch's order is the in-memory loader's own
(:func:`kdtool.data.loader.epoch_order`), so batches do not depend on ``--workers`` and a resumed run
continues exactly. Batch-level augmentation (mixup, cutmix, RandAugment, Cutout) and normalisation
run on the device, as on the in-memory path.
"""

from __future__ import annotations

import io
import os
import random
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from kdtool.data.dataset import Dataset, Split
from kdtool.data.loader import BatchTransform, epoch_generator, epoch_order, global_batches
from kdtool.distributed import DistEnv, all_reduce_max, all_reduce_sum
from kdtool.errors import KdtoolError

LOADERS = ("auto", "memory", "stream")
# --memory-budget's default: this fraction of the memory available now (host RAM, and free GPU memory
# when the data would live on a GPU), leaving the rest to the network, activations and other processes.
DEFAULT_BUDGET_FRACTION = 0.5
# Evaluation resizes the shorter side to image_size / EVAL_CROP, then takes the centre square (ImageNet's 224/256).
EVAL_CROP = 0.875
# Random-resized crop: area fraction and aspect ratio ranges (torchvision's and ImageNet training's defaults).
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)
# --workers' default is the process's share of the cores up to this many: on an H200 with 16 cores, a ResNet-50
# fed by 8 workers waited for data (2,419 JPEGs/s decoded and cropped to 224 px, data only), 16 gave 4,274
# (bench/gpu.py --parts stream). More cores than were measured: each worker also queues 4 batches in memory.
MAX_DEFAULT_WORKERS = 16
PREFETCH_FACTOR = 4  # batches each worker keeps ready
_DECODE_ERRORS = (OSError, RuntimeError, ValueError, SyntaxError, EOFError)
# The most pixels an image may decode to: PIL's own limit (about 89 million, 256 MiB as RGB). A few hundred
# bytes of PNG can claim 14,000 × 14,000 pixels; its size is read from the header before anything is decoded.
MAX_IMAGE_PIXELS = 89_478_485

Note = Callable[[str], None]


def _streamed(what: str) -> KdtoolError:
    return KdtoolError(f"{what} is streamed from files (--loader stream): this needs data that fits in memory; "
                       f"use --loader memory")  # fmt: skip


@dataclass
class FileSplit:
    """One split as image files: ``files`` (paths), ``labels`` (int64, N) and ``ids`` (see
    :class:`kdtool.data.dataset.Split`: each sample's index in the split as listed, before any subset)."""

    files: list[str]
    labels: torch.Tensor
    ids: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.files)

    @property
    def inputs(self) -> torch.Tensor:
        raise _streamed("this dataset")

    def sample_ids(self) -> torch.Tensor:
        return torch.arange(len(self)) if self.ids is None else self.ids

    def take(self, index: torch.Tensor) -> FileSplit:
        positions = index.tolist()
        return FileSplit([self.files[i] for i in positions], self.labels[index], self.sample_ids()[index])

    def random_subset(self, n: int, seed: int) -> FileSplit:
        """The same seeded choice as :meth:`kdtool.data.dataset.Split.random_subset`: the same samples."""
        if n >= len(self):
            return self
        g = torch.Generator().manual_seed(seed)
        return self.take(torch.randperm(len(self), generator=g)[:n].sort().values)

    def decoded_bytes(self, image_size: int) -> int:
        """Bytes the split takes decoded in memory: RGB uint8 at ``image_size`` squared."""
        return len(self) * 3 * image_size * image_size


def imagefolder_files(folder: Path, class_names: list[str] | None) -> tuple[FileSplit, list[str]]:
    """The image files of ``folder`` (one sub-folder per class) in torchvision ``ImageFolder``'s order, so
    ``--limit-train`` picks the same samples as on the in-memory path."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, class_to_idx = find_classes(str(folder))
        samples = make_dataset(str(folder), class_to_idx, IMG_EXTENSIONS)
    except (FileNotFoundError, RuntimeError) as exc:
        raise KdtoolError(f"no images found in {folder}: expected one sub-folder of images per class") from exc
    if class_names is not None and classes != class_names:
        raise KdtoolError(f"class folders of {folder} differ from those of the training folder")
    files = [path for path, _ in samples]
    return FileSplit(files, torch.tensor([label for _, label in samples], dtype=torch.long)), classes


# -- decoding and per-sample augmentation ---------------------------------------------------------------
def decode_image(data: bytes) -> torch.Tensor:
    """Encoded image bytes -> RGB uint8 3×H×W: torchvision's decoders (JPEG, PNG, WebP, GIF), else PIL.

    Raises one of the decoders' own errors (OSError, RuntimeError, ValueError ...) when neither can read it.
    """
    from torchvision.io import ImageReadMode
    from torchvision.io import decode_image as tv_decode

    check_pixels(data)
    try:
        return tv_decode(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError):
        pass  # a format torchvision does not decode (BMP, TIFF ...), or a broken file: PIL tells which
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        rgb = np.asarray(image.convert("RGB"))
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()


def check_pixels(data: bytes | str | os.PathLike) -> None:
    """Refuse (ValueError) an image (its bytes or its file) whose header claims more than :data:`MAX_IMAGE_PIXELS`,
    before it is decoded. A header PIL cannot read is left to the decoders, which then read or refuse the data."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # PIL's warning between its limit and twice it: refused here instead
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:  # the header only
                width, height = image.size
    except Image.DecompressionBombError as exc:  # PIL's own refusal, past twice its limit
        raise ValueError(f"decompression bomb refused ({exc})") from None
    except (UnidentifiedImageError, *_DECODE_ERRORS):
        return
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(f"{width} × {height} pixels, over the limit of {MAX_IMAGE_PIXELS:,} (a decompression bomb?)")


def sample_seed(seed: int, epoch: int, sample_id: int) -> int:
    """The seed of one sample's augmentation in one epoch: a function of these three only (not of the worker)."""
    return ((seed * 1_000_003 + epoch) * 2_147_483_659 + sample_id) & (2**63 - 1)


def random_resized_crop_box(rng: random.Random, height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random crop of :data:`RRC_SCALE` area and :data:`RRC_RATIO` aspect
    (torchvision's RandomResizedCrop rule: ten tries, then the centre crop of the clamped ratio)."""
    area = height * width
    log_ratio = (np.log(RRC_RATIO[0]), np.log(RRC_RATIO[1]))
    for _ in range(10):
        target = area * rng.uniform(*RRC_SCALE)
        aspect = float(np.exp(rng.uniform(*log_ratio)))
        w = round((target * aspect) ** 0.5)
        h = round((target / aspect) ** 0.5)
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    ratio = width / height
    if ratio < RRC_RATIO[0]:
        w, h = width, round(width / RRC_RATIO[0])
    elif ratio > RRC_RATIO[1]:
        h, w = height, round(height * RRC_RATIO[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


# What a training sample's augmentation draws, as stored by a teacher cache: the crop box, the flip and the size
# of the image it was drawn on (a replay checks that its image has that size).
PARAMS = ("top", "left", "height", "width", "flip", "image height", "image width")


@dataclass(frozen=True)
class SampleTransform:
    """Decoded 3×H×W uint8 image -> C×S×S uint8 and its draws (:data:`PARAMS`): random-resized crop and flip
    (``train``), or resize and centre crop (no draws); the random choices come from :func:`sample_seed` alone.
    ``channels`` 1: the data are grey (shards of a grey dataset), the first of the decoded RGB's equal channels
    is kept."""

    size: int
    train: bool
    hflip: bool
    seed: int
    channels: int = 3

    def draw(self, height: int, width: int, epoch: int, sample_id: int) -> tuple[int, ...]:
        """The :data:`PARAMS` of one sample of ``height`` × ``width`` pixels in one epoch."""
        rng = random.Random(sample_seed(self.seed, epoch, sample_id))
        box = random_resized_crop_box(rng, height, width)
        return *box, int(self.hflip and rng.random() < 0.5), height, width

    def apply(self, image: torch.Tensor, params: tuple[int, ...]) -> torch.Tensor:
        """Crop, resize and flip ``image`` as ``params`` (:data:`PARAMS`; empty: evaluation's centre crop) say."""
        from torchvision.transforms.v2 import functional as F

        image = image[: self.channels]
        if not params:
            resized = F.resize(image, [round(self.size / EVAL_CROP)], antialias=True)
            return F.center_crop(resized, [self.size, self.size]).contiguous()
        top, left, h, w, flip = params[:5]
        out = F.resized_crop(image, top, left, h, w, [self.size, self.size], antialias=True)
        return (out.flip(-1) if flip else out).contiguous()

    def __call__(self, image: torch.Tensor, epoch: int, sample_id: int) -> tuple[torch.Tensor, tuple[int, ...]]:
        params = self.draw(image.shape[-2], image.shape[-1], epoch, sample_id) if self.train else ()
        return self.apply(image, params), params


@dataclass(frozen=True)
class BadSample:
    """A sample that could not be read: where (file, or shard and key) and why."""

    where: str
    reason: str
    fatal: bool = False  # a shard that broke off while being read: what follows is lost, so never skipped
    fix: str = "rewrite it (kdtool shard)"  # what a fatal one's message tells the user to do

    def describe(self) -> str:
        return f"{self.where}: {self.reason}"


def bad_sample_error(bad: BadSample) -> KdtoolError:
    if bad.fatal:
        return KdtoolError(f"{bad.describe()}: {bad.fix}")
    return KdtoolError(f"{bad.describe()} (--skip-bad-samples skips unreadable samples and counts them)")


Sample = tuple[torch.Tensor, int, int, tuple[int, ...]]  # image, label, sample id, augmentation draws


def read_sample(where: str, data: bytes, label: int, num_classes: int, transform: SampleTransform, epoch: int,
                sample_id: int) -> Sample | BadSample:  # fmt: skip
    """One decoded, augmented sample, or why it cannot be one (never raises for bad data: a worker's
    exception would reach the user as a traceback, a :class:`BadSample` as one line). ``transform`` may
    return a BadSample itself (a replayed teacher cache whose draws do not fit the image)."""
    if not 0 <= label < num_classes:
        return BadSample(where, f"label {label} is not a class index (0..{num_classes - 1})")
    try:
        image = decode_image(data)
    except _DECODE_ERRORS as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return BadSample(where, f"not a readable image ({why})")
    if image.shape[-1] == 0 or image.shape[-2] == 0:
        return BadSample(where, "empty image")
    out = transform(image, epoch, sample_id)
    if isinstance(out, BadSample):
        return replace(out, where=where)
    return out[0], label, sample_id, out[1]


@dataclass(frozen=True)
class Collate:
    """Samples -> (uint8 B×3×S×S, int64 labels, int64 sample ids, int64 B×P augmentation draws, the batch's bad
    samples)."""

    size: int

    def __call__(self, items: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[BadSample]]:
        good = [item for item in items if not isinstance(item, BadSample)]
        bad = [item for item in items if isinstance(item, BadSample)]
        if not good:
            empty = torch.zeros(0, dtype=torch.long)
            return torch.zeros(0, 3, self.size, self.size, dtype=torch.uint8), empty, empty, empty.view(0, 0), bad
        images = torch.stack([image for image, *_ in good])
        labels, ids, params = (torch.tensor([item[i] for item in good], dtype=torch.long) for i in (1, 2, 3))
        return images, labels, ids, params, bad


class _FileSamples(torch.utils.data.Dataset):
    """Map-style dataset over a :class:`FileSplit`; a key is ``(epoch, position)``, so a persistent
    worker needs no state to know the epoch."""

    def __init__(self, split: FileSplit, transform: SampleTransform, num_classes: int) -> None:
        self.files = list(split.files)
        self.labels = split.labels.tolist()
        self.ids = split.sample_ids().tolist()
        self.transform = transform
        self.num_classes = num_classes

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int]) -> Sample | BadSample:
        epoch, i = key
        path = self.files[i]
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            return BadSample(path, f"cannot read ({exc.strerror or exc})")
        return read_sample(path, data, self.labels[i], self.num_classes, self.transform, epoch, self.ids[i])


class _EpochBatches(Sampler):
    """This process's batches of the epoch set in :attr:`epoch`, as lists of ``(epoch, position)`` keys;
    ``batches`` is a loader's method, held weakly."""

    def __init__(self, batches: Callable[[int], list[list[int]]]) -> None:
        # the loader holds its DataLoader, which holds this sampler: a strong reference back would make a cycle,
        # freed only by the garbage collector, which may close the workers' queues before the DataLoader stops
        # its workers (each join then waits out its 5 s timeout)
        self._batches = weakref.WeakMethod(batches)
        self.epoch = 0

    def batches(self, epoch: int) -> list[list[int]]:
        return self._batches()(epoch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.batches(self.epoch):
            yield [(self.epoch, i) for i in batch]

    def __len__(self) -> int:
        return len(self.batches(self.epoch))


def default_workers() -> int:
    """DataLoader workers per process: the CPU cores this process may use, shared among the processes of
    this node (torchrun's ``LOCAL_WORLD_SIZE``), at most :data:`MAX_DEFAULT_WORKERS`."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))))


def data_loader(dataset: torch.utils.data.Dataset, workers: int, device: torch.device, size: int,
                batch_sampler: Sampler | None = None, batch_size: int | None = None) -> DataLoader:  # fmt: skip
    """A DataLoader with ``workers`` persistent worker processes (0: in this process), pinned memory for
    CUDA, and a few batches prefetched per worker."""
    # batch_size=None with no batch_sampler: the dataset yields whole batches (shard readers batch themselves)
    batching = {"batch_sampler": batch_sampler} if batch_sampler is not None else {"batch_size": batch_size}
    return DataLoader(
        dataset, num_workers=workers, collate_fn=Collate(size), pin_memory=device.type == "cuda",
        persistent_workers=workers > 0, prefetch_factor=PREFETCH_FACTOR if workers > 0 else None, **batching,
    )  # fmt: skip


class CachedTeacher(Protocol):
    """What a streamed loader reads of a replayed teacher cache (:class:`kdtool.distill.replay.StreamReplay`)."""

    def teacher_logits(self, epoch: int, sample_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor: ...


class StreamBatches:
    """What the engine needs of a loader, over batches that arrive from DataLoader workers: batches moved to
    ``device`` and put through the device ``transform``; bad samples refused in one line, or skipped and
    counted when ``skip_bad``. Where ``teacher`` is set (a replayed teacher cache, whose draws the workers'
    sample transform applies), each training batch comes with its samples' cached teacher logits.

    Under torchrun every rank takes the same ``len(self)`` batches per epoch (a rank's surplus is dropped), and
    with ``skip_bad`` a batch left without a readable sample on any rank is skipped by every rank: DDP's
    collectives need each rank to take the same steps."""

    device: torch.device
    transform: BatchTransform
    augment: bool
    seed: int
    rank: int
    world_size: int
    skip_bad: bool
    note: Note
    teacher: CachedTeacher | None = None
    samples: _FileSamples | torch.utils.data.IterableDataset  # what the workers read; its .transform is per sample

    def __len__(self) -> int:
        raise NotImplementedError

    def replay(self, sample_transform: Callable[[SampleTransform], Callable], teacher: CachedTeacher) -> None:
        """Replay a teacher cache (before the first pass): the workers' per-sample transform becomes
        ``sample_transform(the current one)``, and every training batch brings ``teacher``'s logits."""
        self.samples.transform = sample_transform(self.samples.transform)
        self.teacher = teacher

    def _loader_for(self, epoch: int) -> DataLoader:
        raise NotImplementedError

    def augment_generator(self, epoch: int) -> torch.Generator | None:
        """The device augmentation stream for ``epoch`` (the in-memory loader's): mixup, cutmix, RandAugment,
        Cutout."""
        return epoch_generator(self.seed, epoch, 1 + self.rank, self.device) if self.augment else None

    def raw_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """One pass's decoded batches before the device transform: uint8 images and labels on the device, the
        samples' ids and per-sample augmentation draws (:data:`PARAMS`) on the host."""
        skipped: list[BadSample] = []
        left_out = delivered = 0  # left out: readable samples of batches skipped because a rank had none
        for images, labels, ids, params, bad in islice(self._loader_for(epoch), len(self)):  # surplus: dropped
            refused = next((b for b in bad if b.fatal or not self.skip_bad), None)
            if refused is not None:
                raise bad_sample_error(refused)
            skipped.extend(bad)
            if self._empty_on_any_rank(labels.shape[0] == 0):
                left_out += labels.shape[0]
                continue
            delivered += 1
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True), ids, params
        line = self._skipped_line(skipped, left_out) if self.skip_bad else None
        if line is not None and not delivered:
            raise KdtoolError(f"no batch of this pass has a readable sample: {line}")
        if line is not None:
            self.note(line)

    def _distributed(self) -> bool:
        """Whether the ranks of a torchrun job must agree on skipped samples (training with --skip-bad-samples)."""
        return self.skip_bad and self.world_size > 1

    def _empty_on_any_rank(self, empty: bool) -> bool:
        if not self._distributed():
            return empty
        # one tiny collective (and a host sync) per batch, only with --skip-bad-samples under torchrun
        flag = torch.tensor(float(empty), device=self.device)
        return bool(all_reduce_max(flag, DistEnv(self.rank, self.world_size)))

    def _skipped_line(self, skipped: list[BadSample], left_out: int) -> str | None:
        """The pass's skipped samples in one line (None: none), under torchrun every rank's, with the readable
        ones left out."""
        counts = torch.tensor([len(skipped), left_out], device=self.device)
        if self._distributed():
            all_reduce_sum(counts, DistEnv(self.rank, self.world_size))
        unreadable, left_out = counts.tolist()
        if not unreadable:
            return None
        where, plural = (", all processes" if self.world_size > 1 else ""), ("s" if unreadable > 1 else "")
        line = f"skipped {unreadable} unreadable sample{plural} in this pass (--skip-bad-samples{where})"
        if left_out:
            line += (f", and {left_out} readable ones of batches that some process had no readable sample of (every "
                     f"process skips such a batch, to stay in step)")  # fmt: skip
        return line + (f"; the first: {skipped[0].describe()}" if skipped else "")

    def epoch(
        self, epoch: int = 0, augment_generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(inputs, labels)`` batches of one pass, as :meth:`kdtool.data.BatchLoader.epoch` does."""
        for x, y, _ in self.training_batches(epoch, augment_generator):
            yield x, y

    def training_batches(
        self, epoch: int, augment_generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """:meth:`epoch`'s batches as ``(inputs, labels, teacher logits)``: the replayed cache's, or None."""
        augment_gen = self.augment_generator(epoch) if augment_generator is None else augment_generator
        for images, labels, ids, _ in self.raw_batches(epoch):
            teacher = None if self.teacher is None else self.teacher.teacher_logits(epoch, ids, labels).to(self.device)
            yield self.transform(images, augment_gen), labels, teacher


class StreamLoader(StreamBatches):
    """Seeded batches of a :class:`FileSplit`, decoded by ``workers`` processes.

    The order is :class:`kdtool.data.BatchLoader`'s: the same permutation per ``(seed, epoch)`` and the
    same cut into global batches of ``batch_size × world_size``, each rank taking every ``world_size``-th
    sample, so under torchrun the ranks together see each sample once per epoch.
    """

    def __init__(self, split: FileSplit, batch_size: int, sample_transform: SampleTransform, transform: BatchTransform,
                 device: torch.device, num_classes: int, workers: int, shuffle: bool = False, augment: bool = False,
                 seed: int = 0, rank: int = 0, world_size: int = 1, skip_bad: bool = False,
                 note: Note = print) -> None:  # fmt: skip
        self.n = len(split)
        self.batch_size, self.device, self.transform = batch_size, device, transform
        self.shuffle, self.augment, self.seed = shuffle, augment, seed
        self.rank, self.world_size = rank, world_size
        self.skip_bad, self.note = skip_bad, note
        self.samples = _FileSamples(split, sample_transform, num_classes)
        self.sampler = _EpochBatches(self.batch_positions)
        self.workers = workers
        self._loader: DataLoader | None = None  # made on first use: a loader never iterated starts no process

    def _global_batches(self) -> list[tuple[int, int]]:
        return global_batches(self.n, self.batch_size, self.world_size)

    def __len__(self) -> int:
        return len(self._global_batches())

    def batch_positions(self, epoch: int) -> list[list[int]]:
        """This process's batches of ``epoch`` as positions in the split."""
        order = epoch_order(self.n, self.seed, epoch, self.device).tolist() if self.shuffle else range(self.n)
        return [list(order[start:stop])[self.rank :: self.world_size] for start, stop in self._global_batches()]

    def _loader_for(self, epoch: int) -> DataLoader:
        if self._loader is None:
            self._loader = data_loader(self.samples, self.workers, self.device, self.samples.transform.size,
                                       batch_sampler=self.sampler)  # fmt: skip
        self.sampler.epoch = epoch
        return self._loader


# -- --loader auto --------------------------------------------------------------------------------------
_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6, "mib": 2**20,
          "g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tb": 10**12, "tib": 2**40}  # fmt: skip


def parse_bytes(text: str, flag: str = "--memory-budget") -> int:
    """``"4GiB"``, ``"500MB"``, ``"2g"`` or a number of bytes -> bytes (K/M/G/T alone are powers of 1024)."""
    value = text.strip().lower().replace(" ", "")
    number = value.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = value[len(number) :]
    try:
        amount = float(number)
    except ValueError:
        amount = -1.0
    if unit not in _UNITS or amount <= 0:
        raise KdtoolError(f"{flag} takes a size such as 8GiB, 500MB or a number of bytes, got {text!r}")
    return int(amount * _UNITS[unit])


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def available_ram() -> int:
    """Bytes of host memory available now (Linux: MemAvailable; elsewhere the free physical pages)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def default_budget(device: torch.device) -> tuple[int, str]:
    """:data:`DEFAULT_BUDGET_FRACTION` of the available host memory, shared by this node's processes, and on
    a GPU at most that fraction of its free memory (the in-memory path keeps the data on it); with its origin
    in words."""
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    budget = int(available_ram() * DEFAULT_BUDGET_FRACTION / local)
    where = f"{DEFAULT_BUDGET_FRACTION:.0%} of available RAM" + (f" / {local} processes" if local > 1 else "")
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if free * DEFAULT_BUDGET_FRACTION < budget:
            budget, where = int(free * DEFAULT_BUDGET_FRACTION), f"{DEFAULT_BUDGET_FRACTION:.0%} of free GPU memory"
    return budget, where


@dataclass(frozen=True)
class LoaderChoice:
    """Which data path a run uses and why (the run's header line and ``config.json`` say both)."""

    used: str
    reason: str

    def to_record(self) -> dict[str, str]:
        return {"used": self.used, "reason": self.reason}


def choose_loader(asked: str, dataset: str, decoded: int | None, budget: str | None,
                  device: torch.device) -> LoaderChoice:  # fmt: skip
    """``--loader`` resolved: memory or stream as asked; ``auto``: memory when the ``decoded`` bytes of the
    data fit in ``--memory-budget`` (default :func:`default_budget`), else stream."""
    if dataset.startswith("wds:"):
        return LoaderChoice("stream", "wds: shards are always streamed")
    if asked != "auto":
        return LoaderChoice(asked, f"--loader {asked}")
    if decoded is None:
        return LoaderChoice("memory", "the dataset is decoded into memory")
    limit, where = (parse_bytes(budget), f"--memory-budget {budget}") if budget is not None else default_budget(device)
    fits = decoded <= limit
    return LoaderChoice("memory" if fits else "stream", f"--loader auto: decoded data {format_bytes(decoded)} "
                        f"{'fits in' if fits else 'exceeds'} {format_bytes(limit)} ({where})")  # fmt: skip


def is_streamed(dataset: Dataset) -> bool:
    """Whether ``dataset``'s training split is read from files as it goes (not held in memory as tensors)."""
    return not isinstance(dataset.train, Split)
