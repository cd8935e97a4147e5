"""``kdtool.fit``: any ``nn.Module`` trained by kdtool's engine into a regular run folder, from Python.

The data are tensors (or a DataLoader, read once into tensors): uint8 N×C×H×W images go through kdtool's
image path (augmentation, normalisation by their own statistics); any other tensors are inputs the model
reads as they are. The method, the teacher (a module or a run folder) or the Q of LLS-ST are those of the
command line, so the run folder is the same: config.json, metrics.csv, model.safetensors, q.safetensors.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from kdtool.config.options import given_flags
from kdtool.config.runconfig import DistillConfig, TrainConfig
from kdtool.data import Dataset, DatasetInfo, Split
from kdtool.distill.teachers import KD_LOSSES, distillation_target
from kdtool.errors import KdtoolError
from kdtool.losses import FrozenTeacher, SubstituteTeacher
from kdtool.models.registry import PYTHON_PREFIX
from kdtool.reporting.display import OutputConsole
from kdtool.runs.folder import Q, RunDir, plan_run
from kdtool.training.engine import seed_everything
from kdtool.workflows.methods import build_method
from kdtool.workflows.pipeline import fit as fit_run
from kdtool.workflows.pipeline import report_run

Data = tuple[torch.Tensor, torch.Tensor] | Iterable[tuple[torch.Tensor, torch.Tensor]]


def as_split(data: Data, name: str) -> Split:
    """``(inputs, labels)`` tensors, or a DataLoader (any iterable of such batches) read once, as a Split."""
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        inputs, labels = data
    else:
        batches = [(x, y) for x, y in data]
        if not batches:
            raise KdtoolError(f"{name}= holds no batch")
        inputs, labels = torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])
    if inputs.shape[0] != labels.shape[0] or labels.ndim != 1:
        raise KdtoolError(f"{name}=: {inputs.shape[0]} inputs but labels of shape {tuple(labels.shape)}")
    return Split(inputs, labels.long())


def tensor_dataset(train: Split, test: Split, class_names: Sequence[str] | None) -> Dataset:
    """A Dataset of the user's tensors: kind ``image`` for uint8 N×C×H×W square images (statistics from the
    training split), else kind ``tensor`` (inputs read as they are)."""
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    names = tuple(class_names) if class_names is not None else tuple(str(k) for k in range(num_classes))
    if len(names) < num_classes:
        raise KdtoolError(f"class_names names {len(names)} classes but the labels go up to {num_classes - 1}")
    x = train.inputs
    if x.dtype == torch.uint8 and x.ndim == 4 and x.shape[-1] == x.shape[-2]:
        scaled = x.float().div(255.0)
        mean, std = scaled.mean((0, 2, 3)).tolist(), scaled.std((0, 2, 3)).clamp_min(1e-3).tolist()
        info = DatasetInfo("python", names, x.shape[1], x.shape[-1], tuple(mean), tuple(std),
                           crop_padding=max(1, x.shape[-1] // 8))  # fmt: skip
    else:
        info = DatasetInfo("python", names, 0, 0, (), (), kind="tensor")
    return Dataset(info, train, test)


def fit_config(
    method: str | None,
    teacher: nn.Module | str | os.PathLike | None,
    substitute_q: str | os.PathLike | None,
    options: dict[str, Any],
) -> TrainConfig:
    """The (unresolved) config of a :func:`fit` run: a student's when it has a teacher or a Q to learn from."""
    if substitute_q is not None and method not in (None, "lls-st"):
        raise KdtoolError(f"method={method!r}: a student of substitute_q= learns by LLS-ST; drop method=")
    try:
        if teacher is None and substitute_q is None:
            return TrainConfig(smoothing=method or "lls", **options)
        source = f"{PYTHON_PREFIX}{type(teacher).__name__}" if isinstance(teacher, nn.Module) else teacher
        return DistillConfig(teacher=None if source is None else str(source),
                             substitute_q=None if substitute_q is None else str(substitute_q),
                             kd_loss=method if teacher is not None and method else "kd", **options)  # fmt: skip
    except TypeError as exc:  # an option fit sets itself (smoothing=, model=, ...)
        raise KdtoolError(f"kdtool.fit: {exc}") from None


def fit(
    model: nn.Module,
    train: Data,
    test: Data,
    method: str | None = None,
    epochs: int = 10,
    out: str | os.PathLike = "runs/mine",
    *,
    teacher: nn.Module | str | os.PathLike | None = None,
    substitute_q: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    force: bool = False,
    quiet: bool = False,
    **options: Any,
) -> tuple[RunDir, list[dict[str, float]]]:
    """Train ``model`` on ``train``, evaluating on ``test`` every epoch, and write the run folder ``out``.

    ``method`` is a ``--smoothing`` of train-teacher (default ``lls``; ``ls``, ``onehot``, ``ols``, ...). With
    ``teacher`` (a module, or a run folder) the model is a student and ``method`` its ``--kd-loss`` (default
    ``kd``, or the ``kd_preset=``'s; ``dkd``, ``dist``, ``wttm``, ``nkd``); with ``substitute_q`` (a Q artifact
    or a run folder holding one), LLS-ST.
    ``options`` are the run options of ``train-teacher`` (with ``teacher`` or ``substitute_q``, of ``distill``;
    the CLI reference, docs/cli.md, lists them) by their config names (``alpha=0.2``, ``lr=0.05``,
    ``batch_size=64``, ``device="cpu"``, ``val_fraction=0.1``, ``seed=1`` ...): the fields of the run's config,
    made from the option table (:data:`~kdtool.config.options.OPTIONS`). They are checked as the command line
    checks its flags: an unknown name, or an option the run does not use (``alpha`` with ``method="ls"``), is a
    KdtoolError. Returns the run folder and its metrics rows.
    """
    taught = teacher is not None or substitute_q is not None
    given = given_flags(options, (DistillConfig if taught else TrainConfig).commands, "kdtool.fit")  # as the CLI
    dataset = tensor_dataset(as_split(train, "train"), as_split(test, "test"), class_names)
    if dataset.info.kind == "tensor":
        options.setdefault("augment", "none")  # kdtool's augmentations are for images
    name = f"{PYTHON_PREFIX}{type(model).__name__}"
    common = {"model": name, "dataset": "python", "epochs": epochs, "out": str(out), **options}
    cfg = fit_config(method, teacher, substitute_q, common)
    cfg.resolve()
    cfg.check_given(given)
    plan_run(cfg.out, cfg.result_options(), force, resume=False)
    record: dict[str, Any] = {}
    if isinstance(teacher, nn.Module):
        target = KD_LOSSES[cfg.kd_loss](cfg, FrozenTeacher(teacher), None)
        record = cfg.preset_record()
    elif taught:
        target, record = distillation_target(cfg, dataset.info, None)
    else:
        target = build_method(cfg, dataset.info.num_classes)
    seed_everything(cfg.seed)
    title = f"{target.name} · {name} ({len(dataset.train)} train / {len(dataset.test)} test)"
    console = OutputConsole(quiet=quiet)  # as the command line prints: plain, unwrapped lines into a pipe
    if taught:
        title += f" · {cfg.loss_line()}"
    run, rows = fit_run(cfg, dataset, model, target, force, console, record, title)
    if isinstance(target, SubstituteTeacher):
        target.q.save(run.path / Q)
    report_run(console, run.path, rows)
    return run, rows
