"""A run's data as its config says (loaded, class subset, sample fraction, limits; batched without augmentation
for evaluation) and its network's predictions on them: what training, ``evaluate``, reports and Q sources share.

The training loader, which may replay a teacher cache, is :func:`kdtool.workflows.pipeline.make_loaders`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from kdtool.config.runconfig import TrainConfig
from kdtool.data import BatchLoader, Dataset, ImageBatchTransform, load_dataset
from kdtool.data.augment import parse_augment
from kdtool.data.dataset import class_counts
from kdtool.data.shards import ShardLoader, ShardSplit, is_wds
from kdtool.data.stream import (
    FileSplit,
    LoaderChoice,
    SampleTransform,
    StreamLoader,
    choose_loader,
    default_workers,
    is_streamed,
)
from kdtool.data.text import Vocabulary, trim_to_longest
from kdtool.distributed import all_reduce_max, init_from_env, select_device
from kdtool.errors import KdtoolError
from kdtool.runs.folder import RunDir
from kdtool.training.engine import predict
from kdtool.training.metrics import SHOT_NAMES, is_imbalanced, shot_groups
from kdtool.training.runmodel import load_run_model, run_vocabulary


def load_data(cfg: TrainConfig, vocabulary: Vocabulary | None = None, stream: bool = False) -> Dataset:
    """The run's data, limited; text is encoded with ``vocabulary`` (default: built from its training split);
    ``stream``: listed as files for the streaming path rather than decoded into memory."""
    return load_full_data(cfg, vocabulary, stream).limited(cfg.limit_train, cfg.limit_test, cfg.seed)


def load_full_data(cfg: TrainConfig, vocabulary: Vocabulary | None = None, stream: bool = False) -> Dataset:
    """The run's whole dataset (before any subset or limit), decoded, or listed where ``stream``."""
    return load_dataset(cfg.dataset, cfg.data_root, cfg.download, cfg.image_size, cfg.vocab_size, cfg.max_len,
                        vocabulary, stream, cfg.val_shards, cfg.class_names, cfg.skip_bad_samples)  # fmt: skip


def choose_data_path(cfg: TrainConfig, resume: bool) -> LoaderChoice | None:
    """The data path of a run (None: its data are always decoded into memory); a resumed run keeps its own.

    ``--loader auto`` compares the decoded size of the whole dataset with ``--memory-budget``; under torchrun
    the ranks agree (any rank short of memory makes every rank stream).
    """
    if not cfg.dataset.startswith("imagefolder:") and not is_wds(cfg.dataset):
        return None
    if resume:
        recorded = RunDir(cfg.out).config().get("data_loader")
        if isinstance(recorded, dict) and recorded.get("used") in ("memory", "stream"):
            return LoaderChoice(recorded["used"], str(recorded.get("reason", "")) + "; kept on --resume")
    env, device = init_from_env(cfg.device)
    decoded = None
    if cfg.loader == "auto" and not is_wds(cfg.dataset):
        listed = load_full_data(cfg, stream=True)
        decoded = sum(split.decoded_bytes(cfg.image_size) for split in (listed.train, listed.test))
    choice = choose_loader(cfg.loader, cfg.dataset, decoded, cfg.memory_budget, device)
    if env.enabled and cfg.loader == "auto":
        streams = all_reduce_max(torch.tensor(float(choice.used == "stream"), device=device), env)
        if bool(streams) and choice.used == "memory":
            choice = LoaderChoice("stream", choice.reason + "; another process is short of memory")
    return choice


def select_data(full: Dataset, cfg: TrainConfig, kept: list[int] | None, fraction: float = 1.0) -> Dataset:
    """A student's data: the class subset ``kept`` (relabelled in that order), then a stratified
    ``fraction`` of the training split, then ``--limit-train/--limit-test``."""
    dataset = full if kept is None else full.subset_classes(kept)
    return dataset.sample_fraction(fraction, cfg.seed).limited(cfg.limit_train, cfg.limit_test, cfg.seed)


def training_split(dataset: Dataset, cfg: TrainConfig) -> Dataset:
    """The run's splits: the validation hold-out first (so it stays balanced), then ``--imbalance-ratio``'s
    long-tailed training split."""
    dataset = dataset.with_validation(cfg.val_fraction, cfg.seed)
    return dataset if cfg.imbalance_ratio is None else dataset.long_tailed(cfg.imbalance_ratio, cfg.seed)


def train_class_counts(dataset: Dataset) -> list[int] | None:
    """The training count of each class; None where the labels are not known before training (wds: shards)."""
    if isinstance(dataset.train, ShardSplit):  # the labels are inside the shards
        return None
    labels = getattr(dataset.train, "labels", None)
    return None if labels is None else class_counts(labels, dataset.info.num_classes)


def _unchanged(inputs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return inputs


def _transform(dataset: Dataset, augment: tuple[str, ...]):
    if is_streamed(dataset):  # crop and flip happen per sample in the workers; the rest on the device
        cutout = dataset.info.image_size // 2 if "cutout" in augment else 0
        return ImageBatchTransform(dataset.info.mean, dataset.info.std, 0, False, "randaugment" in augment, cutout)
    if dataset.info.kind == "text":  # no augmentation; each batch is cut to its longest text
        return trim_to_longest
    if dataset.info.kind == "tensor":  # kdtool.fit's tensors: the model reads them as they are
        return _unchanged
    return ImageBatchTransform.for_dataset(dataset.info, augment=augment)


def evaluation_loader(dataset: Dataset, split: str, batch_size: int, device: torch.device,
                      cfg: TrainConfig | None = None, note=print) -> BatchLoader:  # fmt: skip
    """One split (``train``, ``validation`` or ``test``) in order, in batches, without augmentation (streamed
    with ``cfg``'s workers where the data are)."""
    if is_streamed(dataset):
        return _stream_loader(dataset, split, batch_size, device, cfg, note, train=False)
    return BatchLoader(getattr(dataset, split), batch_size, _transform(dataset, ()), device)


def _stream_loader(dataset: Dataset, split: str, batch_size: int, device: torch.device, cfg: TrainConfig | None,
                   note, train: bool, **order: Any) -> StreamLoader | ShardLoader:  # fmt: skip
    """A streaming loader of one split: files (imagefolder:) or shards (wds:); ``train``: augmented per sample
    and shuffled by ``order`` (seed, rank, world size)."""
    data = getattr(dataset, split)
    info = dataset.info
    workers = default_workers() if cfg is None or cfg.workers is None else cfg.workers
    seed = order.get("seed", 0 if cfg is None else cfg.seed)
    per_sample = SampleTransform(info.image_size, train, train and info.hflip, seed, info.channels)
    augment = parse_augment(cfg.augment) if train and cfg is not None else ()
    options = {"workers": workers, "skip_bad": cfg is not None and cfg.skip_bad_samples, "note": note, **order}
    transform = _transform(dataset, augment)
    if isinstance(data, FileSplit):
        return StreamLoader(data, batch_size, per_sample, transform, device, info.num_classes, **options)
    if isinstance(data, ShardSplit):
        return ShardLoader(data, batch_size, per_sample, transform, device, info.num_classes, **options)
    raise KdtoolError(f"the {split} split of {info.name} is not streamed")


def dataset_record(dataset: Dataset) -> dict[str, Any]:
    info = dataclasses.asdict(dataset.info)
    info["class_names"] = list(info["class_names"])
    num_val = 0 if dataset.validation is None else len(dataset.validation)
    record = {**info, "num_train": len(dataset.train), "num_val": num_val, "num_test": len(dataset.test)}
    counts = train_class_counts(dataset)
    if counts is not None:
        record["train_class_counts"] = counts
        if is_imbalanced(counts):
            groups, rule = shot_groups(counts)
            record["shot_groups"] = {"rule": rule, "group": [SHOT_NAMES[g] for g in groups.tolist()]}
    return record


def predict_run(
    run: RunDir, split: str = "test", device: str = "auto", needed_by: str = "this command"
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """A run's network on one split of its own data, in order, without augmentation: (logits, labels,
    class names).

    The data are rebuilt from the run's config (dataset, class subset and sample fraction of a
    student, limits, seed, validation hold-out), so ``train`` is the very training set the run
    trained on (without the samples ``--val-fraction`` held out), unaugmented. Logits (N×K) and
    labels come back on the CPU. ``needed_by`` names what asked, for a run whose network kdtool cannot
    rebuild (:class:`~kdtool.training.runmodel.NetworkUnavailable`).
    """
    if split not in ("train", "test"):
        raise KdtoolError(f"split must be 'train' or 'test', got {split!r}")
    where = select_device(device)
    model, cfg, info = load_run_model(run, where, needed_by)
    record = run.config()
    streamed = (record.get("data_loader") or {}).get("used") == "stream"  # the run's own preprocessing
    full = load_full_data(cfg, run_vocabulary(run), streamed)
    dataset = select_data(full, cfg, record.get("kept_classes"), getattr(cfg, "sample_fraction", 1.0))
    dataset = training_split(dataset, cfg)
    names = list(info["class_names"])
    if list(dataset.info.class_names) != names:
        raise KdtoolError(f"{run.path} was trained on classes {names}, but its config now yields other classes")
    return (*predict_split(model, cfg, dataset, split, where), names)


def predict_split(
    model: nn.Module, cfg: TrainConfig, dataset: Dataset, split: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``model``'s logits and the labels of one split (``train`` or ``test``) of ``dataset``, in the
    split's order, in evaluation batches without augmentation; both on the CPU."""
    logits, labels = predict(model, evaluation_loader(dataset, split, cfg.eval_batch_size, device, cfg))
    return logits.cpu(), labels.cpu()
