"""A trained run's network (and vocabulary), rebuilt from its folder."""

from __future__ import annotations

import torch
from torch import nn

from kdtool.config import TrainConfig, config_of_record
from kdtool.data import DatasetInfo
from kdtool.data.text import Vocabulary
from kdtool.errors import KdtoolError
from kdtool.models import build_model
from kdtool.runs import MODEL, VOCAB, RunDir


def build_run_model(cfg: TrainConfig, info: DatasetInfo) -> nn.Module:
    """The network of ``cfg.model`` sized for a dataset (image shape, or vocabulary and text model sizes)."""
    return build_model(cfg.model, info, embed_dim=cfg.embed_dim, hidden_size=cfg.hidden_size)


def run_vocabulary(run: RunDir) -> Vocabulary | None:
    """The vocabulary a text run was trained with, from its ``vocab.json`` (None for an image run)."""
    if run.config().get("dataset_info", {}).get("kind") != "text":
        return None
    return Vocabulary.load(run.path / VOCAB)


def load_run_model(run: RunDir, device: torch.device | str = "cpu") -> tuple[nn.Module, TrainConfig, dict]:
    """Rebuild a run's network from its ``config.json`` and ``model.safetensors`` (eval mode).

    Returns the model, the run's config and its recorded dataset facts (class names, shape).
    """
    record = run.training_config()
    cfg = config_of_record(record)
    info = record["dataset_info"]
    model = build_run_model(cfg, DatasetInfo.from_record(info))
    try:
        run.load_weights(model)
    except (RuntimeError, OSError) as exc:
        raise KdtoolError(f"{run.path / MODEL} does not fit a {cfg.model}: {exc}") from exc
    return model.to(device).eval(), cfg, info
