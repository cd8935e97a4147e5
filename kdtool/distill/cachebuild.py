"""Making a teacher cache (``kdtool cache-teacher``): a trained run's network, run once over V seeded
augmented views of every training sample, its logits written with the augmentation draws, batch by batch
(:class:`~kdtool.distill.cache.CacheWriter`: the cache is never held in memory).

In-memory data: view v draws every sample's augmentation choices from a generator seeded by (seed, v), in
sample order, exactly as a training batch draws them (:meth:`~kdtool.data.ImageBatchTransform.draw`), and
applies them the same way. Streamed data (``imagefolder:`` with ``--loader stream``, ``wds:``): view v is the
stream path's epoch v of the seed (:class:`~kdtool.data.stream.SampleTransform`: random-resized crop and flip
drawn per sample id), decoded by DataLoader workers. A student replays either
(:mod:`kdtool.distill.replay`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist

from kdtool.data import Dataset, ImageBatchTransform, load_dataset
from kdtool.data.augment import parse_augment
from kdtool.data.shards import ShardSplit, is_wds
from kdtool.data.stream import PARAMS, FileSplit, is_streamed
from kdtool.data.text import trim_to_longest
from kdtool.distill.cache import CACHE_DTYPES, CacheWriter, Layout, TeacherCache, data_options, row_lookup
from kdtool.distributed import DistEnv, all_reduce_sum, barrier, init_from_env
from kdtool.errors import KdtoolError
from kdtool.fileio import atomic_path, sha256_file
from kdtool.losses import FrozenTeacher
from kdtool.runs.folder import MODEL, RunDir
from kdtool.training.accel import frozen_for_inference, resolve_accel
from kdtool.training.rundata import _stream_loader
from kdtool.training.runmodel import load_run_model, run_vocabulary

# Views of a cache whose data are augmented, unless --views says otherwise: a student epoch e replays view
# e mod V, so a run of up to this many epochs sees a new augmentation every epoch.
DEFAULT_VIEWS = 10
# The stream path's per-image augmentation is its own (random-resized crop and flip); these run on the
# device from the epoch's generator, which a cache cannot replay per sample.
_DEVICE_AUGMENTS = ("randaugment", "cutout")

# (batch rows in the cache, labels, augmentation draws B×P, what the teacher reads)
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def view_generator(seed: int, view: int) -> torch.Generator:
    """The CPU generator of view ``view``'s augmentation choices (independent of the device)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + view) * 1009 + 7)


@dataclass(frozen=True)
class CacheRequest:
    """What ``cache-teacher`` was asked for (see its options); None: the default."""

    views: int | None = None
    top_k: int | None = None
    augment: str = "standard"
    limit_train: int | None = None
    seed: int = 0
    batch_size: int = 1024
    device: str = "auto"
    cache_dtype: str = "float16"
    loader: str = "memory"
    workers: int | None = None
    amp: str = "none"


def build_teacher_cache(
    run: RunDir, out: str, request: CacheRequest = CacheRequest(), progress: Callable[[int, int], None] | None = None
) -> TeacherCache:
    """Write the cache of ``run``'s network over its dataset's training split (``limit_train`` samples of it,
    picked by ``seed``) to ``out`` and open it: ``views`` views (default :data:`DEFAULT_VIEWS`, 1 without
    augmentation), the ``top_k`` largest logits (default: all, exact). ``progress(done, total)`` is called
    after each batch, in sample-views."""
    env, where = init_from_env(request.device)  # under torchrun: this rank's device, the ranks joined
    accel = resolve_accel(request.amp, False, where, print)
    network, cfg, info = load_run_model(run, where, "cache-teacher")
    frozen = FrozenTeacher(frozen_for_inference(network, channels_last=where.type == "cpu"))

    def teacher(x: torch.Tensor) -> torch.Tensor:
        with accel.autocast():  # --amp: the logits of a mixed-precision teacher, as a student with --amp gets live
            return frozen(x).float()

    streamed = request.loader == "stream" or is_wds(cfg.dataset)
    dataset = load_dataset(cfg.dataset, cfg.data_root, cfg.download, cfg.image_size, cfg.vocab_size, cfg.max_len,
                           run_vocabulary(run), streamed, cfg.val_shards, cfg.class_names)  # fmt: skip
    dataset = dataset.limited(request.limit_train, None, request.seed)
    if list(dataset.info.class_names) != list(info["class_names"]):
        raise KdtoolError(f"{run.path} was trained on classes {info['class_names']}, its dataset now has "
                          f"{list(dataset.info.class_names)}")  # fmt: skip
    options = data_options(cfg.dataset, cfg.image_size, request.augment, request.limit_train, request.seed,
                           dataset.info.kind == "text", "stream" if streamed else "memory")  # fmt: skip
    teacher_facts = {"teacher_run": str(run.path), "teacher_sha256": sha256_file(run.path / MODEL),
                     "teacher_model": cfg.model, "teacher_smoothing": cfg.smoothing,
                     "teacher_amp": request.amp}  # fmt: skip
    shown = progress if env.is_main else None  # under torchrun, rank 0's bar stands for all
    return write_teacher_cache(teacher, dataset, out, request, options, teacher_facts, where, shown, env)


def write_teacher_cache(
    teacher: Callable[[torch.Tensor], torch.Tensor],
    dataset: Dataset,
    out: str,
    request: CacheRequest,
    options: dict,
    teacher_facts: dict[str, str],
    where: torch.device = torch.device("cpu"),
    progress: Callable[[int, int], None] | None = None,
    env: DistEnv = DistEnv(),
) -> TeacherCache:
    """Write the cache of ``teacher`` over ``dataset``'s training split (as limited: ``options`` are its
    :func:`data_options`) to ``out`` atomically, batch by batch, and open it. Under torchrun (``env``) each
    rank runs the teacher over its share of the samples and writes its rows into the one file rank 0 made;
    ``progress`` counts this rank's sample-views."""
    streamed = options["loader"] == "stream"
    augmented = streamed or options["augment"] != "none"  # the stream path always crops at random
    names = list(dataset.info.class_names)
    views, top_k = _checked(request, augmented, len(names), streamed)
    batches = _stream_batches if streamed else _memory_batches
    params, batch_views, share = batches(dataset, request, augmented, where, env)
    layout = Layout(views, len(dataset.train), len(names), top_k, params, CACHE_DTYPES[request.cache_dtype], streamed)
    meta = {**teacher_facts, "dataset": dataset.info.name, "class_names": json.dumps(names), "views": str(views),
            "num_samples": str(layout.num_samples), "top_k": str(top_k), "cache_dtype": request.cache_dtype,
            "data_options": json.dumps(options), "created_by": _created_by()}  # fmt: skip
    done = 0
    with _shared_file(out, env) as tmp:
        writer = CacheWriter(tmp, layout, dataset.train.sample_ids(), meta, create=env.is_main)
        barrier(env)  # the header and size are there before any rank writes rows
        for view in range(views):
            for rows, labels, drawn, x in batch_views(view):
                writer.add(view, rows, labels, drawn, teacher(x))
                done += len(rows)
                if progress is not None:
                    progress(done, views * share)
        written = all_reduce_sum(writer.close().to(where, torch.int32), env)
        missing = int((written == 0).sum())
        if missing:  # a bad sample, or a rank's share that lost one: nothing half-written is kept
            raise KdtoolError(f"{missing} sample-views of the teacher cache were never written")
    barrier(env)  # rank 0 has renamed the file over out
    return TeacherCache.open(out)


@contextlib.contextmanager
def _shared_file(out: str, env: DistEnv) -> Iterator[Path]:
    """The temporary file every rank writes: rank 0's :func:`atomic_path` (its name sent to the others), renamed
    over ``out`` once all ranks are done."""
    if env.is_main:
        with atomic_path(out) as tmp:
            if env.enabled:
                dist.broadcast_object_list([str(tmp)], src=0)
            yield tmp
            barrier(env)  # every rank's rows are written
        return
    name = [None]
    dist.broadcast_object_list(name, src=0)
    yield Path(name[0])
    barrier(env)


def _checked(request: CacheRequest, augmented: bool, num_classes: int, streamed: bool) -> tuple[int, int]:
    """``--views`` and ``--top-k`` resolved, every option checked (one-line KdtoolErrors)."""
    views = (DEFAULT_VIEWS if augmented else 1) if request.views is None else request.views
    if views < 1 or (views > 1 and not augmented):
        raise KdtoolError(f"--views must be at least 1, and 1 without augmentation (every view would be the same); "
                          f"got {views}")  # fmt: skip
    top_k = num_classes if request.top_k is None else request.top_k
    if not 1 <= top_k <= num_classes:
        raise KdtoolError(f"--top-k must be between 1 and the {num_classes} classes, got {top_k}")
    if request.batch_size < 1:
        raise KdtoolError(f"--batch-size must be positive, got {request.batch_size}")
    if request.loader not in ("memory", "stream"):
        raise KdtoolError(f"cache-teacher --loader takes memory or stream (the student's data path), got "
                          f"{request.loader!r}")  # fmt: skip
    if request.cache_dtype not in CACHE_DTYPES:
        raise KdtoolError(f"unknown --cache-dtype {request.cache_dtype!r}: choose one of {', '.join(CACHE_DTYPES)}")
    device_side = [name for name in parse_augment(request.augment) if name in _DEVICE_AUGMENTS]
    if streamed and device_side:
        raise KdtoolError(f"--augment {device_side[0]} runs on the device on streamed data, drawn per batch: a cache "
                          f"cannot replay it; cache without it (random-resized crop and flip are the stream path's "
                          f"own)")  # fmt: skip
    return views, top_k


def _memory_batches(dataset: Dataset, request: CacheRequest, augmented: bool, where: torch.device, env: DistEnv):
    """P, per view the batches of in-memory data (augmentation drawn for the whole split per view; under
    torchrun every world-size-th batch is this rank's), and how many samples are this rank's."""
    inputs = dataset.train.inputs
    augment = parse_augment(request.augment)
    transform = (
        trim_to_longest if dataset.info.kind == "text" else ImageBatchTransform.for_dataset(dataset.info, augment)
    )
    n, size = inputs.shape[0], request.batch_size
    one = (1, *inputs.shape[1:])
    params = transform.draw(one, view_generator(request.seed, 0), torch.device("cpu")).shape[1] if augmented else 0
    labels = dataset.train.labels
    starts = range(env.rank * size, n, size * env.world_size)

    def batch_views(view: int) -> Iterator[Batch]:
        drawn = torch.zeros(n, 0, dtype=torch.long)
        if augmented:
            drawn = transform.draw(inputs.shape, view_generator(request.seed, view), torch.device("cpu"))
        for start in starts:
            x = inputs[start : start + size].to(where)
            part = drawn[start : start + size]
            x = transform.apply(x, part.to(where)) if augmented else transform(x, None)
            yield torch.arange(start, min(start + size, n)), labels[start : start + size], part, x

    return params, batch_views, sum(min(size, n - start) for start in starts)


def _stream_batches(dataset: Dataset, request: CacheRequest, augmented: bool, where: torch.device, env: DistEnv):
    """P, per view the batches of this rank's share of streamed data (every world-size-th sample) in split
    order: view v is the stream path's epoch v; and the share's size."""
    if not is_streamed(dataset):
        raise KdtoolError("the data are not streamed")
    share = replace(dataset, train=_rank_share(dataset.train, env))
    order = {"shuffle": False, "seed": request.seed, "workers": request.workers}
    loader = _stream_loader(share, "train", request.batch_size, where, None, print, train=augmented, **order)
    rows_of = row_lookup(dataset.train.sample_ids())

    def batch_views(view: int) -> Iterator[Batch]:
        for images, labels, ids, params in loader.raw_batches(view):
            yield rows_of[ids], labels.cpu(), params, loader.transform(images, None)

    return len(PARAMS) if augmented else 0, batch_views, len(share.train)


def _rank_share(split: FileSplit | ShardSplit, env: DistEnv) -> FileSplit | ShardSplit:
    """Every world-size-th sample of a streamed split, from this rank's (ids kept; a shard split reads past the
    others' samples without decoding them)."""
    if not env.enabled:
        return split
    if isinstance(split, FileSplit):
        return split.take(torch.arange(env.rank, len(split), env.world_size))
    mine = torch.zeros(sum(split.counts), dtype=torch.bool)
    mine[split.sample_ids()[env.rank :: env.world_size]] = True
    return replace(split, keep=mine)


def _created_by() -> str:
    from kdtool import __version__  # the package's, read when a cache is written

    return f"kdtool {__version__}"
