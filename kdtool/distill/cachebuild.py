"""Making a teacher cache (``kdtool cache-teacher``): a trained run's network, run once over V seeded
augmented views of every training sample, its top-k logits stored with the augmentation choices.

View v of the cache draws every sample's augmentation choices from a generator seeded by (seed, v),
in sample order, exactly as a training batch draws them (:meth:`~kdtool.data.ImageBatchTransform.draw`),
and applies them the same way; a student replays them (:class:`~kdtool.distill.replay.ReplayLoader`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from kdtool.data import ImageBatchTransform, load_dataset
from kdtool.data.augment import parse_augment
from kdtool.data.loader import BatchTransform
from kdtool.data.text import trim_to_longest
from kdtool.distill.cache import TeacherCache, compress_logits, data_options
from kdtool.distributed import select_device
from kdtool.errors import KdtoolError
from kdtool.fileio import sha256_file
from kdtool.losses import FrozenTeacher
from kdtool.runs.folder import MODEL, RunDir
from kdtool.training.accel import frozen_for_inference
from kdtool.training.runmodel import load_run_model, run_vocabulary

# Views of a cache whose data are augmented, unless --views says otherwise: a student epoch e replays view
# e mod V, so a run of up to this many epochs sees a new augmentation every epoch.
DEFAULT_VIEWS = 10


def view_generator(seed: int, view: int) -> torch.Generator:
    """The CPU generator of view ``view``'s augmentation choices (independent of the device)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + view) * 1009 + 7)


def build_teacher_cache(
    run: RunDir,
    views: int | None = None,
    top_k: int | None = None,
    augment: str = "standard",
    limit_train: int | None = None,
    seed: int = 0,
    batch_size: int = 1024,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> TeacherCache:
    """The cache of ``run``'s network over its dataset's training split (``limit_train`` samples of it,
    picked by ``seed``): ``views`` views (default :data:`DEFAULT_VIEWS`, 1 without augmentation) with the
    per-image augmentations of ``augment``, the ``top_k`` largest logits (default: all, exact).
    ``progress(done, total)`` is called after each view."""
    where = select_device(device)
    network, cfg, info = load_run_model(run, where, "cache-teacher")
    teacher = FrozenTeacher(frozen_for_inference(network, channels_last=where.type == "cpu"))
    dataset = load_dataset(cfg.dataset, cfg.data_root, cfg.download, cfg.image_size, cfg.vocab_size, cfg.max_len,
                           run_vocabulary(run)).limited(limit_train, None, seed)  # fmt: skip
    names = list(dataset.info.class_names)
    if names != list(info["class_names"]):
        raise KdtoolError(f"{run.path} was trained on classes {info['class_names']}, its dataset now has {names}")
    text = dataset.info.kind == "text"
    options = data_options(cfg.dataset, cfg.image_size, augment, limit_train, seed, text)
    augmented = options["augment"] != "none"
    views = (DEFAULT_VIEWS if augmented else 1) if views is None else views
    if views < 1 or (views > 1 and not augmented):
        raise KdtoolError(f"--views must be at least 1, and 1 without augmentation (every view would be the same); "
                          f"got {views}")  # fmt: skip
    top_k = len(names) if top_k is None else top_k
    if not 1 <= top_k <= len(names):
        raise KdtoolError(f"--top-k must be between 1 and the {len(names)} classes, got {top_k}")
    if batch_size < 1:
        raise KdtoolError(f"--batch-size must be positive, got {batch_size}")
    transform = trim_to_longest if text else ImageBatchTransform.for_dataset(dataset.info, parse_augment(augment))
    tensors = teacher_views(teacher, dataset.train.inputs, transform, augmented, views, top_k, seed, batch_size,
                            where, progress)  # fmt: skip
    return TeacherCache(*tensors, dataset.train.sample_ids(), names, dataset.info.name, options, str(run.path),
                        sha256_file(run.path / MODEL), {"teacher_model": cfg.model,
                                                        "teacher_smoothing": cfg.smoothing})  # fmt: skip


def teacher_views(
    teacher: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    transform: BatchTransform,
    augmented: bool,
    views: int,
    top_k: int,
    seed: int = 0,
    batch_size: int = 1024,
    device: torch.device = torch.device("cpu"),
    progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A teacher's outputs over ``views`` views of ``inputs`` (N samples, as stored): the augmentation
    choices (V×N×P), top-k classes and logits (V×N×k) and rest logits (V×N) of a :class:`TeacherCache`.

    ``transform`` turns stored inputs into what the teacher reads; where ``augmented`` it is an
    :class:`~kdtool.data.ImageBatchTransform` that draws and applies each view's choices."""
    n = inputs.shape[0]
    params, indices, logits, rests = [], [], [], []
    for view in range(views):
        drawn = torch.zeros(n, 0, dtype=torch.long)
        if augmented:
            drawn = transform.draw(inputs.shape, view_generator(seed, view), torch.device("cpu"))
        chunks = []
        for start in range(0, n, batch_size):
            x = inputs[start : start + batch_size].to(device)
            x = transform.apply(x, drawn[start : start + batch_size].to(device)) if augmented else transform(x, None)
            chunks.append([part.cpu() for part in compress_logits(teacher(x), top_k)])
        params.append(drawn)
        for stored, parts in zip((indices, logits, rests), zip(*chunks, strict=True), strict=True):
            stored.append(torch.cat(parts))
        if progress is not None:
            progress(view + 1, views)
    return torch.stack(params), torch.stack(indices), torch.stack(logits), torch.stack(rests)
