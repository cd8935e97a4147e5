"""WebDataset tar shards (``--dataset "wds:DIR/train-{000000..000009}.tar"``): reading and writing.

A shard is a plain tar file; consecutive members sharing a key (the path up to the first dot of the
file name) form one sample, e.g. ``000042.jpg`` and ``000042.cls`` (the class index as text). kdtool
reads them with Python's ``tarfile``, so no extra package is needed; shards written by the
``webdataset`` package (``TarWriter``, ``ShardWriter``) are read the same way.

Every shard is listed once when the data are loaded (its headers only), so each shard's sample count
is known up front: the epoch length, the split of shards across torchrun ranks and DataLoader
workers, and ``--limit-train`` are exact. Shards go to ranks round-robin in pattern order and, within a
rank, to its workers round-robin; each reader shuffles its shards' order and its samples through a
seeded buffer every epoch (an approximate shuffle, as usual for shards). Under torchrun every rank
trains the same number of batches per epoch: the smallest rank's count; the surplus of ranks with more
samples (uneven shard counts or sizes) is dropped that epoch, so no rank ever waits for another.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from kdtool.data.dataset import Dataset, DatasetInfo
from kdtool.data.loader import BatchTransform
from kdtool.data.stream import (
    BadSample,
    Note,
    SampleTransform,
    StreamBatches,
    bad_sample_error,
    data_loader,
    read_sample,
)
from kdtool.errors import KdtoolError
from kdtool.fileio import (
    atomic_write_json,
    atomic_write_text,
    foreign_files,
    own_folder,
    record_written,
    recorded_files,
    remove_recorded,
)

WDS_PREFIX = "wds:"
IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "ppm", "bmp")
LABEL_KEY = "cls"
CLASSES_FILE = "classes.txt"
# what kdtool shard records beside its shards: the source, the seed of the training order, the counts, and what
# the images are (channels, stored size, normalisation, flips) so that a run of the shards reads them as the source
SHARDS_FILE = "shards.json"
# --image-size of imagefolder: data, and of wds: shards whose shards.json records none
DEFAULT_IMAGE_SIZE = 64
SHARDS_FORMAT = "kdtool.shards/1"
# Samples each reader holds for its seeded shuffle: enough to mix neighbouring samples of a shard, few
# enough that encoded images (tens of KiB each) stay a small fraction of memory.
SHUFFLE_BUFFER = 1000
# shards a reader keeps open and takes samples from in turn: a shard of few classes never fills a batch alone
INTERLEAVE = 4
# The largest tar member read into memory: an encoded image is a few MiB at most; anything bigger is refused
# (or skipped) before it is read.
MAX_MEMBER_BYTES = 64 * 2**20
# webdataset's rule: the key is the path up to the first dot of the file name, the rest its field
_KEY = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def is_wds(spec: str) -> bool:
    return spec.startswith(WDS_PREFIX)


def expand_braces(pattern: str) -> list[str]:
    """``a-{000..002}.tar`` -> a-000.tar, a-001.tar, a-002.tar; ``{x,y}`` lists; several braces multiply."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    head, tail, body = pattern[: match.start()], pattern[match.end() :], match.group(1)
    span = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if span:
        first, last = span.groups()
        width = len(first) if first.startswith("0") else 0
        items = [str(i).zfill(width) for i in range(int(first), int(last) + 1)]
        if not items:
            raise KdtoolError(f"shard pattern {pattern!r}: the range {{{body}}} is empty")
    else:
        items = body.split(",")
    return [expanded for item in items for expanded in expand_braces(head + item + tail)]


def shard_files(pattern: str, flag: str) -> list[str]:
    """The shards a pattern names, each checked to exist."""
    paths = [str(Path(p).expanduser()) for p in expand_braces(pattern)]
    missing = next((p for p in paths if not Path(p).is_file()), None)
    if missing is not None:
        raise KdtoolError(f"{flag} {pattern}: no shard {missing}")
    return paths


def default_val_shards(pattern: str) -> str | None:
    """The evaluation shards beside ``…/train-{…}.tar``: the files named like it with ``val`` for ``train``
    (any numbers where the pattern has braces), as a brace pattern; None where the name has no ``train``."""
    folder, name = os.path.split(pattern)
    if "train" not in name:
        return None
    wildcard = re.sub(r"\{[^{}]*\}", "*", name.replace("train", "val"))
    found = sorted(Path(folder or ".").expanduser().glob(wildcard))
    if not found:
        return None
    numbered = [re.fullmatch(r"(.*-)(\d+)\.tar", p.name) for p in found]
    if all(numbered) and len({(m.group(1), len(m.group(2))) for m in numbered}) == 1:
        numbers = [int(m.group(2)) for m in numbered]
        if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
            first, last = numbered[0].group(2), numbered[-1].group(2)
            span = first if len(found) == 1 else f"{{{first}..{last}}}"
            return os.path.join(folder, f"{numbered[0].group(1)}{span}.tar")
    return os.path.join(folder, "{" + ",".join(p.name for p in found) + "}")


def resolve_val_shards(dataset: str, val_shards: str | None) -> str:
    """``--val-shards`` as given, or the ``val`` twin of the training pattern."""
    if val_shards is not None:
        return val_shards
    found = default_val_shards(dataset.removeprefix(WDS_PREFIX))
    if found is None:
        raise KdtoolError(f"{dataset} needs --val-shards PATTERN, the evaluation shards (found none named like "
                          f"the training shards with 'val' for 'train')")  # fmt: skip
    return found


def read_class_names(path: Path, flag: str) -> list[str]:
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise KdtoolError(f"{flag} {path}: cannot read it ({exc})") from None
    if not names:
        raise KdtoolError(f"{flag} {path}: no class names (one a line)")
    if len(set(names)) != len(names):
        raise KdtoolError(f"{flag} {path}: a class name is listed twice")
    return names


# -- reading shards ---------------------------------------------------------------------------------------
def _split_name(name: str) -> tuple[str, str] | None:
    match = _KEY.match(name)
    return None if match is None else (match.group(1), match.group(2).lower())


def _grouped(members: Iterator[tuple[str, bytes | None]]) -> Iterator[tuple[str, dict[str, bytes | None]]]:
    """Consecutive tar members of one key as one sample: (key, {field: data})."""
    key, fields = None, {}
    for name, data in members:
        parts = _split_name(name)
        if parts is None:
            continue  # a file without a field (no dot): not part of any sample
        if parts[0] != key:
            if key is not None:
                yield key, fields
            key, fields = parts[0], {}
        fields[parts[1]] = data
    if key is not None:
        yield key, fields


@dataclass(frozen=True)
class Oversized:
    """A tar member over :data:`MAX_MEMBER_BYTES`, left unread."""

    size: int


def _sample_problem(fields: dict) -> str | None:
    if not any(k in fields for k in IMAGE_KEYS):
        return "has no image (" + "|".join(IMAGE_KEYS) + ")"
    if LABEL_KEY not in fields:
        return f"has no {LABEL_KEY} (class index)"
    return None


def _image_field(fields: dict) -> str:
    return next(k for k in IMAGE_KEYS if k in fields)


def _truncated(shard: str, why: object) -> BadSample:
    return BadSample(shard, f"truncated or not a tar file ({why})")


@dataclass(frozen=True)
class ShardIndex:
    """What listing one shard found: its complete samples' keys in order, the incomplete ones, and where the
    file breaks off (None: it is whole)."""

    keys: tuple[str, ...]
    bad: tuple[BadSample, ...]
    truncated: str | None = None


def index_shard(shard: str) -> ShardIndex:
    """List a shard's samples from its tar headers alone (the data are skipped, not read); a member whose
    data run past the end of the file marks the shard truncated, and the listing stops there."""
    size = os.path.getsize(shard)
    truncated: list[str] = []

    def names() -> Iterator[tuple[str, None]]:
        with tarfile.open(shard, mode="r:") as tar:
            for member in tar:
                if member.offset_data + member.size > size:
                    truncated.append(f"{member.name} runs past the end of the file")
                    return
                if member.isfile():
                    yield member.name, None

    keys, bad = [], []
    try:
        for key, fields in _grouped(names()):
            problem = _sample_problem(fields)
            if problem is None:
                keys.append(key)
            else:
                bad.append(BadSample(f"{shard}: sample {key}", problem))
    except (tarfile.TarError, EOFError, OSError) as exc:
        truncated.append(str(exc) or type(exc).__name__)
    return ShardIndex(tuple(keys), tuple(bad), truncated[0] if truncated else None)


def shard_samples(shard: str) -> Iterator[tuple[str, dict[str, bytes | None]]]:
    """A shard's complete samples in order, read as one sequential stream; where the file breaks off, the
    samples before the break come first, then the error is raised."""
    failure: list[BaseException] = []

    def members() -> Iterator[tuple[str, bytes | None]]:
        try:
            with open(shard, "rb") as fh, tarfile.open(fileobj=fh, mode="r|") as tar:
                for member in tar:
                    if member.isfile() and member.size > MAX_MEMBER_BYTES:
                        yield member.name, Oversized(member.size)
                    elif member.isfile():
                        data = tar.extractfile(member)
                        yield member.name, None if data is None else data.read()
        except (tarfile.TarError, EOFError, OSError) as exc:
            failure.append(exc)

    for key, fields in _grouped(members()):
        if _sample_problem(fields) is None:
            yield key, fields
    if failure:
        raise failure[0]


def _no_labels() -> KdtoolError:
    return KdtoolError("wds: data keep their labels inside the shards: --val-fraction, --classes, --class-indices "
                       "and --sample-fraction need imagefolder: or in-memory data")  # fmt: skip


@dataclass
class ShardSplit:
    """One split as shards: ``shards`` with each one's complete sample count ``counts``; ``keep`` (bool, one
    per sample in shard order) marks the samples a ``--limit-*`` kept (None: all)."""

    shards: list[str]
    counts: list[int]
    keep: torch.Tensor | None = None
    skipped: list[BadSample] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(self.counts) if self.keep is None else int(self.keep.sum())

    @property
    def inputs(self) -> torch.Tensor:
        raise KdtoolError("wds: data are streamed from their shards: this needs data that fits in memory")

    @property
    def labels(self) -> torch.Tensor:
        raise _no_labels()

    def take(self, index: torch.Tensor) -> ShardSplit:
        raise _no_labels()

    def sample_ids(self) -> torch.Tensor:
        everything = torch.arange(sum(self.counts))
        return everything if self.keep is None else everything[self.keep]

    def random_subset(self, n: int, seed: int) -> ShardSplit:
        """The same seeded choice as :meth:`kdtool.data.dataset.Split.random_subset`, over shard order."""
        if n >= len(self):
            return self
        g = torch.Generator().manual_seed(seed)
        chosen = self.sample_ids()[torch.randperm(len(self), generator=g)[:n]]
        keep = torch.zeros(sum(self.counts), dtype=torch.bool)
        keep[chosen] = True
        return ShardSplit(self.shards, self.counts, keep, self.skipped)

    def offsets(self) -> list[int]:
        """Each shard's first sample id."""
        out, total = [], 0
        for count in self.counts:
            out.append(total)
            total += count
        return out

    def kept_in(self, shard: int) -> int:
        """Samples of shard number ``shard`` this split uses."""
        if self.keep is None:
            return self.counts[shard]
        start = self.offsets()[shard]
        return int(self.keep[start : start + self.counts[shard]].sum())


def _split_of(pattern: str, flag: str, skip_bad: bool) -> ShardSplit:
    shards = shard_files(pattern, flag)
    indexes = [index_shard(s) for s in shards]
    bad = []
    for shard, index in zip(shards, indexes, strict=True):
        if index.truncated is not None:  # its complete samples before the break are read; the rest are lost
            bad.append(_truncated(shard, f"{index.truncated}; {len(index.keys)} complete samples before it"))
        bad.extend(index.bad)
    if bad and not skip_bad:
        raise bad_sample_error(bad[0])
    return ShardSplit(shards, [len(index.keys) for index in indexes], skipped=bad)


def load_shards(spec: str, val_shards: str | None, class_names: str | None, image_size: int,
                skip_bad: bool) -> Dataset:  # fmt: skip
    """``wds:PATTERN``: training shards, ``val_shards`` (default: their ``val`` twins) for evaluation, class
    names from ``class_names`` or ``classes.txt`` beside the training shards."""
    pattern = spec.removeprefix(WDS_PREFIX)
    train = _split_of(pattern, "--dataset wds:", skip_bad)
    test = _split_of(resolve_val_shards(spec, val_shards), "--val-shards", skip_bad)
    if class_names is not None:
        names = read_class_names(Path(class_names).expanduser(), "--class-names")
    else:
        beside = Path(train.shards[0]).parent / CLASSES_FILE
        if not beside.is_file():
            raise KdtoolError(f"{spec}: no {CLASSES_FILE} beside the shards (one class name a line): add one or "
                              f"give --class-names FILE")  # fmt: skip
        names = read_class_names(beside, "class names")
    if len(train) == 0 or len(test) == 0:
        raise KdtoolError(f"{spec}: the {'training' if len(train) == 0 else 'evaluation'} shards hold no samples")
    images = _recorded_images(Path(train.shards[0]).parent)
    info = DatasetInfo(spec, tuple(names), images.get("channels", 3), image_size,
                       tuple(images.get("mean", _IMAGENET_MEAN)), tuple(images.get("std", _IMAGENET_STD)),
                       hflip=images.get("hflip", True), crop_padding=max(1, image_size // 8))  # fmt: skip
    return Dataset(info, train, test)


def default_image_size(dataset: str) -> int:
    """``--image-size`` where the run gives none: for ``wds:`` shards the size their ``shards.json`` records (the
    source's, as ``kdtool shard`` wrote them), else :data:`DEFAULT_IMAGE_SIZE`."""
    if is_wds(dataset):
        size = _recorded_images(Path(dataset.removeprefix(WDS_PREFIX)).expanduser().parent).get("size")
        if isinstance(size, int) and size > 0:
            return size
    return DEFAULT_IMAGE_SIZE


def _recorded_images(folder: Path) -> dict:
    """What ``shards.json`` beside the shards says their images are (channels, size, mean, std, hflip); empty for
    shards kdtool did not write or wrote before it recorded them (then RGB with ImageNet's statistics)."""
    try:
        manifest = json.loads((folder / SHARDS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    images = manifest.get("images") if isinstance(manifest, dict) else None
    return images if isinstance(images, dict) else {}


def use_line(done: Written, dataset: Dataset) -> str:
    """The options that train on shards just written as on their source: the pattern, and the image size of a
    decoded source (an imagefolder's files keep their sizes; --image-size then picks one)."""
    size = "" if hasattr(dataset.train, "files") else f" --image-size {dataset.info.image_size}"
    return (
        f'use: --dataset "wds:{shard_pattern(done.train)}"{size}  (evaluation shards {shard_pattern(done.val)} '
        f"are found beside them)"
    )


# -- the loader --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reader:
    """One reader's share of a split: shard numbers, and how many batches it yields per epoch."""

    shards: tuple[int, ...]
    batches: int


def plan_readers(split: ShardSplit, batch_size: int, rank: int, world_size: int, workers: int,
                 shard_ranks: bool) -> tuple[list[Reader], int]:  # fmt: skip
    """This rank's readers (one per DataLoader worker, one for ``workers == 0``) and the batches every
    rank trains per epoch. ``shard_ranks``: shards go to ranks round-robin (training); else every rank
    reads them all (evaluation). A rank with fewer shards than workers uses fewer workers."""
    numbers = list(range(len(split.shards)))

    def rank_shards(r: int) -> list[int]:
        return numbers[r::world_size] if shard_ranks else numbers

    if shard_ranks and len(split.shards) < world_size:
        raise KdtoolError(f"{len(split.shards)} shards for {world_size} processes: every process needs at least one "
                          f"shard (write smaller shards with kdtool shard --shard-size)")  # fmt: skip
    fewest = min(len(rank_shards(r)) for r in range(world_size))
    used = max(1, min(workers, fewest))

    def readers_of(r: int) -> list[Reader]:
        mine = rank_shards(r)
        readers = []
        for w in range(used):
            share = tuple(mine[w::used])
            samples = sum(split.kept_in(s) for s in share)
            readers.append(Reader(share, -(-samples // batch_size)))
        return readers

    if not shard_ranks:
        readers = readers_of(rank)
        return readers, sum(r.batches for r in readers)
    # every rank stops at the smallest rank's batch count: uneven shards never leave a rank waiting
    per_rank = min(sum(r.batches for r in readers_of(r)) for r in range(world_size))
    return readers_of(rank), per_rank


class _ShardSamples(IterableDataset):
    """A rank's readers as an iterable dataset: worker ``w`` (or this process) runs reader ``w``. The epoch
    comes from a shared-memory tensor the main process sets, so persistent workers follow it."""

    def __init__(self, split: ShardSplit, readers: list[Reader], batch_size: int, transform: SampleTransform,
                 num_classes: int, shuffle: bool, seed: int, rank: int) -> None:  # fmt: skip
        self.split, self.readers, self.batch_size = split, readers, batch_size
        self.transform, self.num_classes = transform, num_classes
        self.shuffle, self.seed, self.rank = shuffle, seed, rank
        self.epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.offsets = split.offsets()

    def __iter__(self) -> Iterator[list]:
        info = get_worker_info()
        reader = self.readers[0 if info is None else info.id]
        epoch = int(self.epoch)
        rng = random.Random(((self.seed * 1_000_003 + epoch) * 1009 + self.rank) * 101 + (info.id if info else 0))
        shards = list(reader.shards)
        if self.shuffle:
            rng.shuffle(shards)
        samples = self._samples(shards, rng if self.shuffle else None)
        batch: list = []
        for item in samples:
            batch.append(self._decode(item, epoch))
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _samples(self, shards: list[int], rng: random.Random | None) -> Iterator[tuple[str, int, dict]]:
        """(where, sample id, fields) of the reader's kept samples: :data:`INTERLEAVE` shards open at once, one
        sample from each in turn (a shard's classes are mixed with three others' before the buffer), shuffled
        through a seeded buffer. A shard is read up to the samples its listing counted."""
        buffer: list = []
        queue = [self._shard_items(number) for number in shards]
        open_now, queue = queue[:INTERLEAVE], queue[INTERLEAVE:]
        while open_now:
            for items in list(open_now):
                item = next(items, None)
                if item is None:
                    open_now.remove(items)
                    if queue:
                        open_now.append(queue.pop(0))
                    continue
                if item[1] < 0 or rng is None:  # a broken shard's error goes out at once
                    yield item
                    if item[1] < 0:
                        return
                    continue
                buffer.append(item)
                if len(buffer) >= SHUFFLE_BUFFER:
                    yield buffer.pop(rng.randrange(len(buffer)))
        if rng is not None:
            rng.shuffle(buffer)
        yield from buffer

    def _shard_items(self, number: int) -> Iterator[tuple[str, int, dict]]:
        """One shard's kept samples, then, where it breaks off or changed since it was listed, an error item."""
        shard, start, count = self.split.shards[number], self.offsets[number], self.split.counts[number]
        position = 0
        try:
            for key, fields in shard_samples(shard):
                sample_id, position = start + position, position + 1
                if self.split.keep is None or bool(self.split.keep[sample_id]):
                    yield f"{shard}: sample {key}", sample_id, fields
                if position == count:  # a truncated shard's listed samples end before its break
                    break
        except (tarfile.TarError, EOFError, OSError) as exc:
            yield shard, -1, {"error": str(exc) or type(exc).__name__}
            return
        if position < count:  # the file changed since it was listed
            yield shard, -1, {"error": f"{position} of the {count} samples listed"}

    def _decode(self, item: tuple[str, int, dict], epoch: int):
        where, sample_id, fields = item
        if "error" in fields:  # never skipped: the rest of the shard is lost
            return replace(_truncated(where, fields["error"]), fatal=True)
        oversized = next((name for name, data in fields.items() if isinstance(data, Oversized)), None)
        if oversized is not None:
            return BadSample(where, f"{oversized} is {fields[oversized].size:,} bytes, over the limit of "
                                    f"{MAX_MEMBER_BYTES:,}")  # fmt: skip
        try:
            label = int(fields[LABEL_KEY].decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            return BadSample(where, f"{LABEL_KEY} is not a class index")
        return read_sample(where, fields[_image_field(fields)], label, self.num_classes, self.transform, epoch,
                           sample_id)  # fmt: skip


class ShardLoader(StreamBatches):
    """Batches of a :class:`ShardSplit` for one process (see the module docstring for the split of shards
    over ranks and workers, the shuffle and uneven shards)."""

    def __init__(self, split: ShardSplit, batch_size: int, sample_transform: SampleTransform,
                 transform: BatchTransform, device: torch.device, num_classes: int, workers: int,
                 shuffle: bool = False, augment: bool = False, seed: int = 0, rank: int = 0, world_size: int = 1,
                 skip_bad: bool = False, note: Note = print) -> None:  # fmt: skip
        self.device, self.transform, self.augment, self.seed = device, transform, augment, seed
        self.rank, self.world_size, self.skip_bad, self.note = rank, world_size, skip_bad, note
        self.readers, self.batches = plan_readers(split, batch_size, rank, world_size, workers, shard_ranks=shuffle)
        self.samples = _ShardSamples(split, self.readers, batch_size, sample_transform, num_classes, shuffle, seed,
                                     rank)  # fmt: skip
        self.workers = len(self.readers) if workers > 0 else 0
        self.size = sample_transform.size
        self._loader: DataLoader | None = None

    def __len__(self) -> int:
        return self.batches

    def _loader_for(self, epoch: int) -> DataLoader:
        if self._loader is None:
            # readers batch their samples themselves: the DataLoader only collates each list
            self._loader = data_loader(self.samples, self.workers, self.device, self.size)
        self.samples.epoch.fill_(epoch)
        return self._loader


# -- writing shards (kdtool shard) ------------------------------------------------------------------------
class ShardWriter:
    """Writes ``PREFIX-000000.tar``, ``PREFIX-000001.tar`` ... of ``shard_size`` samples each; each shard goes
    to a temporary file renamed when complete, so a shard on disk is never half-written."""

    def __init__(self, folder: Path, prefix: str, shard_size: int) -> None:
        self.folder, self.prefix, self.shard_size = folder, prefix, shard_size
        self.written: list[Path] = []
        self._tar: tarfile.TarFile | None = None
        self._temp: Path | None = None
        self._in_shard = 0
        self.samples = 0

    def add(self, key: str, fields: dict[str, bytes]) -> None:
        if self._tar is None or self._in_shard == self.shard_size:
            self._close()
            path = self.folder / f"{self.prefix}-{len(self.written):06d}.tar"
            self._temp = path.with_name(f".{path.name}.tmp")
            self._tar = tarfile.open(self._temp, mode="w", format=tarfile.USTAR_FORMAT)
            self.written.append(path)
            self._in_shard = 0
        for name, data in fields.items():
            member = tarfile.TarInfo(f"{key}.{name}")
            member.size, member.mode, member.mtime = len(data), 0o444, 0
            self._tar.addfile(member, io.BytesIO(data))
        self._in_shard += 1
        self.samples += 1

    def _close(self) -> None:
        if self._tar is not None and self._temp is not None:
            self._tar.close()
            with open(self._temp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(self._temp, self.written[-1])
            record_written(self.written[-1])
            self._tar = None

    def close(self) -> list[Path]:
        self._close()
        return self.written


def shard_pattern(paths: list[Path]) -> str:
    """The brace pattern naming ``paths`` (``DIR/train-{000000..000003}.tar``)."""
    first, last = paths[0], paths[-1]
    if len(paths) == 1:
        return str(first)
    prefix = first.name.rsplit("-", 1)[0]
    return str(first.parent / f"{prefix}-{{{first.stem.rsplit('-', 1)[1]}..{last.stem.rsplit('-', 1)[1]}}}.tar")


def check_shard_folder(folder: Path, force: bool) -> None:
    """``kdtool shard --out``: a new or empty folder, or with ``--force`` one holding only files kdtool recorded
    writing there (its manifest: shards, classes.txt), which are then removed."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise KdtoolError(f"--out {folder} is a file, not a folder")
    if not any(folder.iterdir()):
        return
    if not force:
        raise KdtoolError(f"--out {folder} is not empty: choose a new folder, or add --force to replace the shards "
                          f"kdtool wrote there")  # fmt: skip
    if recorded_files(folder) is None:
        raise KdtoolError(f"--force replaces only what kdtool shard recorded writing, and {folder} has no such record: "
                          f"remove its files yourself or choose another --out")  # fmt: skip
    foreign = foreign_files(folder)
    if foreign:
        raise KdtoolError(f"--force replaces only what kdtool shard writes, but {folder / foreign[0]} is something "
                          f"else: remove it or choose another --out")  # fmt: skip
    remove_recorded(folder)


@dataclass(frozen=True)
class Written:
    """What ``kdtool shard`` wrote: the training and evaluation shards and their sample counts."""

    train: list[Path]
    val: list[Path]
    num_train: int
    num_val: int
    classes: Path


def _encoded(path: str) -> tuple[str, bytes]:
    """A file's image as a shard field: JPEG and PNG bytes as they are, any other format re-encoded as PNG."""
    suffix = Path(path).suffix.lower().lstrip(".")
    data = Path(path).read_bytes()
    if suffix in ("jpg", "jpeg", "png"):
        return ("jpg" if suffix == "jpeg" else suffix), data
    from torchvision.io import encode_png

    from kdtool.data.stream import decode_image

    try:
        return "png", encode_png(decode_image(data)).numpy().tobytes()
    except (OSError, RuntimeError, ValueError, SyntaxError, EOFError) as exc:
        raise KdtoolError(f"{path}: not a readable image ({exc})") from None


def _tensor_png(image: torch.Tensor) -> bytes:
    from torchvision.io import encode_png

    return encode_png(image.contiguous()).numpy().tobytes()


def write_shards(dataset: Dataset, out: Path, shard_size: int, seed: int = 0) -> Written:
    """Every sample of ``dataset``'s training and test splits as shards ``train-NNNNNN.tar`` and
    ``val-NNNNNN.tar`` of ``shard_size`` samples in ``out``, plus ``classes.txt`` and ``shards.json``. Files of
    a listed (streamed) imagefolder are copied as they are; decoded images are written as PNG (lossless).

    The training samples go out in a random order seeded by ``seed`` (recorded in ``shards.json``): in split
    order (an imagefolder's is class order) a shard would hold one or two classes, which no shuffle buffer
    could mix. A sample's key is its index in the split as loaded."""
    own_folder(out)
    counts, written = {}, {}
    for name, split in (("train", dataset.train), ("val", dataset.test)):
        writer = ShardWriter(out, name, shard_size)
        labels = split.labels.tolist()
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)) if name == "train" else None
        for i in range(len(labels)) if order is None else order.tolist():
            if hasattr(split, "files"):
                field_name, data = _encoded(split.files[i])
            else:
                field_name, data = "png", _tensor_png(split.inputs[i])
            writer.add(f"{i:08d}", {field_name: data, LABEL_KEY: str(labels[i]).encode("ascii")})
        written[name], counts[name] = writer.close(), writer.samples
    classes = out / CLASSES_FILE
    atomic_write_text(classes, "".join(f"{c}\n" for c in dataset.info.class_names))
    info = dataset.info
    images = {
        "channels": 3 if hasattr(dataset.train, "files") else info.channels,
        "mean": list(info.mean),
        "std": list(info.std),
        "hflip": info.hflip,
    }  # an imagefolder's files decode as RGB
    if not hasattr(dataset.train, "files"):
        images["size"] = info.image_size
    atomic_write_json(out / SHARDS_FILE, {"format": SHARDS_FORMAT, "source": info.name,
                                          "train_order": f"random permutation, seed {seed}", "seed": seed,
                                          "train_samples": counts["train"], "val_samples": counts["val"],
                                          "shard_size": shard_size, "images": images})  # fmt: skip
    return Written(written["train"], written["val"], counts["train"], counts["val"], classes)
