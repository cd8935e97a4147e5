"""From resolved options to a finished run folder: data -> model -> target -> engine -> files."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from rich.console import Console
from torch import nn

from kdtool.config import TrainConfig
from kdtool.data import BatchLoader, Dataset, ImageBatchTransform, load_dataset
from kdtool.display import EpochDisplay
from kdtool.engine import Trainer, seed_everything, select_device
from kdtool.errors import KdtoolError
from kdtool.models import MODELS, build_model
from kdtool.qmatrix import QMatrix
from kdtool.runs import Q, RunDir, check_output_dir
from kdtool.targets import TARGETS, Target, build_target


def load_data(cfg: TrainConfig) -> Dataset:
    dataset = load_dataset(cfg.dataset, cfg.data_root, cfg.download, cfg.image_size)
    return dataset.limited(cfg.limit_train, cfg.limit_test, cfg.seed)


def make_loaders(dataset: Dataset, cfg: TrainConfig, device: torch.device) -> tuple[BatchLoader, BatchLoader]:
    train_tf = ImageBatchTransform.for_dataset(dataset.info, augment=cfg.augment)
    test_tf = ImageBatchTransform.for_dataset(dataset.info, augment=False)
    train = BatchLoader(dataset.train, cfg.batch_size, train_tf, device, shuffle=True, augment=cfg.augment,
                        seed=cfg.seed)  # fmt: skip
    test = BatchLoader(dataset.test, cfg.eval_batch_size, test_tf, device)
    return train, test


def dataset_record(dataset: Dataset) -> dict[str, Any]:
    info = dataclasses.asdict(dataset.info)
    info["class_names"] = list(info["class_names"])
    return {**info, "num_train": len(dataset.train), "num_test": len(dataset.test)}


def fit(
    cfg: TrainConfig,
    dataset: Dataset,
    model: nn.Module,
    target: Target,
    force: bool,
    console: Console,
    record: dict[str, Any] | None = None,
    title: str = "",
) -> tuple[RunDir, list[dict[str, float]]]:
    """Train ``model`` with ``target`` and write the complete run folder ``cfg.out``."""
    device = select_device(cfg.device)
    model.to(device)
    target.to(device)
    train_loader, test_loader = make_loaders(dataset, cfg, device)
    trainer = Trainer(model, target, train_loader, test_loader, cfg)

    run = RunDir.create(cfg.out, force)
    run.write_config({**cfg.to_dict(), **(record or {}), "dataset_info": dataset_record(dataset),
                      "device_used": str(device)})  # fmt: skip
    rows: list[dict[str, float]] = []
    with EpochDisplay(console, title, cfg.epochs, len(train_loader)) as display:
        for row in trainer.epochs(display.step):
            rows.append(row)
            run.write_metrics(rows)
            display.epoch_done(row)
    run.save_model(model)
    q = target.learned_q()
    if q is not None:
        QMatrix(q, list(dataset.info.class_names), cfg.alpha, dataset.info.name, source=target.name,
                extra={"run": str(run.path)}).save(run.path / Q)  # fmt: skip
    return run, rows


def load_run_model(run: RunDir, device: torch.device | str = "cpu") -> tuple[nn.Module, TrainConfig, dict]:
    """Rebuild a run's network from its ``config.json`` and ``model.safetensors`` (eval mode).

    Returns the model, the run's config and its recorded dataset facts (class names, shape).
    """
    record = run.config()
    if "dataset_info" not in record or "model" not in record:
        raise KdtoolError(f"{run.path / 'config.json'} does not describe a kdtool training run")
    cfg = TrainConfig.from_dict(record)
    info = record["dataset_info"]
    model = build_model(cfg.model, len(info["class_names"]), info["channels"], info["image_size"])
    try:
        run.load_weights(model)
    except (RuntimeError, OSError) as exc:
        raise KdtoolError(f"{run.path / 'model.safetensors'} does not fit a {cfg.model}: {exc}") from exc
    return model.to(device).eval(), cfg, info


def train_teacher(cfg: TrainConfig, force: bool, console: Console) -> tuple[RunDir, list[dict[str, float]]]:
    """``kdtool train-teacher``: validate everything first, then train and write the run folder."""
    cfg.resolve()
    if cfg.smoothing not in TARGETS:
        raise KdtoolError(f"unknown smoothing method {cfg.smoothing!r}: choose one of {', '.join(TARGETS)}")
    if cfg.model not in MODELS:
        raise KdtoolError(f"unknown model {cfg.model!r}: choose one of {', '.join(MODELS)}")
    check_output_dir(cfg.out, force)
    dataset = load_data(cfg)
    seed_everything(cfg.seed)
    info = dataset.info
    model = build_model(cfg.model, info.num_classes, info.channels, info.image_size)
    target = build_target(cfg.smoothing, cfg, info.num_classes)
    title = f"{cfg.smoothing} · {cfg.model} · {info.name} ({len(dataset.train)} train / {len(dataset.test)} test)"
    return fit(cfg, dataset, model, target, force, console, title=title)
