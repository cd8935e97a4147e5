"""``kdtool evaluate``: a run's network on its own data or on another dataset with its classes."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kdtool.data import DatasetInfo, load_dataset
from kdtool.distributed import select_device
from kdtool.errors import KdtoolError
from kdtool.q.subsets import resolve_classes
from kdtool.runs.folder import RunDir
from kdtool.training.metrics import (
    classification_metrics,
    confusion_matrix,
    is_imbalanced,
    long_tail_metrics,
    per_class_accuracy,
    per_class_f1,
    select_classes,
    shot_groups,
)
from kdtool.training.rundata import predict_run, predict_split
from kdtool.training.runmodel import load_run_model, run_vocabulary


@dataclass
class Evaluation:
    """Metrics of one evaluation. ``metrics``: ``acc``, ``macro_f1``, ``nll``, ``ece`` (15 bins), and where
    the run's training split was imbalanced ``balanced_acc``, ``many_acc``, ``medium_acc``, ``few_acc``
    (grouped by ``shot_rule``). Per class (in ``class_names`` order): ``support`` (samples), ``accuracy``
    (recall; NaN without samples), ``f1``, ``train_counts`` (the run's training samples, where its
    config.json records them); ``confusion[i, j]`` counts samples of class i predicted as j."""

    class_names: list[str]
    metrics: dict[str, float]
    support: torch.Tensor
    accuracy: torch.Tensor
    f1: torch.Tensor
    confusion: torch.Tensor
    train_counts: list[int] | None = None
    shot_rule: str | None = None

    @classmethod
    def of(cls, logits: torch.Tensor, labels: torch.Tensor, class_names: list[str],
           train_counts: list[int] | None = None) -> Evaluation:  # fmt: skip
        confusion = confusion_matrix(logits, labels)
        metrics = classification_metrics(logits, labels, prefix="")
        rule = None
        if train_counts is not None and is_imbalanced(train_counts):
            groups, rule = shot_groups(train_counts)
            metrics.update(long_tail_metrics(logits, labels, groups, prefix=""))
        return cls(list(class_names), metrics, confusion.sum(1), per_class_accuracy(logits, labels),
                   per_class_f1(logits, labels), confusion, train_counts, rule)  # fmt: skip


def _input_kind(info: DatasetInfo) -> str:
    return "text" if info.kind == "text" else f"{info.channels}×{info.image_size}px images"


def dataset_logits(
    run: RunDir,
    dataset: str,
    data_root: str | None,
    download: bool,
    limit_test: int | None,
    split: str,
    device: str,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The run's network on ``split`` of ``dataset``, keeping only the samples of the run's classes.

    The images must have the run's shape; the dataset must hold every class of the run (a student of
    a class subset can be evaluated on the full dataset: its classes are taken, in its order).
    """
    where = select_device(device)
    model, cfg, info = load_run_model(run, where, "evaluate")
    data = load_dataset(dataset, data_root, download, cfg.image_size, cfg.vocab_size, cfg.max_len,
                        run_vocabulary(run))  # fmt: skip
    trained = DatasetInfo.from_record(info)
    if _input_kind(trained) != _input_kind(data.info):
        raise KdtoolError(f"{run.path} was trained on {trained.name} ({_input_kind(trained)}) and cannot read "
                          f"{data.info.name} ({_input_kind(data.info)})")  # fmt: skip
    names = list(info["class_names"])
    if list(data.info.class_names) != names:
        try:
            data = data.subset_classes(resolve_classes(data.info.class_names, names=names))
        except KdtoolError as exc:
            raise KdtoolError(f"{data.info.name} lacks a class of {run.path}: {exc}") from exc
    data = data.limited(None, limit_test, cfg.seed)
    return (*predict_split(model, cfg, data, split, where), names)


def evaluate(
    run: RunDir,
    dataset: str | None = None,
    data_root: str | None = None,
    download: bool = False,
    limit_test: int | None = None,
    split: str = "test",
    classes: list[str] | None = None,
    device: str = "auto",
    class_indices: list[int] | None = None,
) -> Evaluation:
    """Evaluate a run's network on ``split`` of its own data (``dataset`` None: exactly as it was
    trained and tested, limits included) or of ``dataset``; ``classes`` (names) or ``class_indices``
    keep only those classes' samples and predict among them alone."""
    if split not in ("train", "test"):
        raise KdtoolError(f"--split must be train or test, got {split!r}")
    if dataset is None:
        if data_root is not None or download or limit_test is not None:
            raise KdtoolError("--data-root, --download and --limit-test apply with --dataset only")
        logits, labels, names = predict_run(run, split, device, "evaluate")
    else:
        logits, labels, names = dataset_logits(run, dataset, data_root, download, limit_test, split, device)
    counts = (run.config().get("dataset_info") or {}).get("train_class_counts")
    if classes is not None or class_indices is not None:
        kept = resolve_classes(names, names=classes, indices=class_indices)
        logits, labels = select_classes(logits, labels, kept)
        names = [names[i] for i in kept]
        counts = None if counts is None else [counts[i] for i in kept]
    if labels.numel() == 0:
        raise KdtoolError("nothing to evaluate: the chosen split and classes hold no samples")
    return Evaluation.of(logits, labels, names, counts)
