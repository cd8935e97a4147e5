"""A run's network (and vocabulary): built for its data and input, or rebuilt from its folder."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from kdtool.config.runconfig import TrainConfig, config_of_record
from kdtool.data import DatasetInfo
from kdtool.data.inputs import ModelInput, attach_input_adapter, stats_for
from kdtool.data.text import Vocabulary
from kdtool.errors import KdtoolError
from kdtool.models.registry import PYTHON_PREFIX, build_model
from kdtool.models.zoo import LoadReport, is_zoo_name, load_pretrained, zoo_data_config
from kdtool.runs.folder import MODEL, VOCAB, RunDir


def model_input(cfg: TrainConfig, info: DatasetInfo, channels: int | None = None) -> ModelInput:
    """What the run's network reads: the dataset's batches as they are, or, for a zoo model, ``--input-size``
    images normalised by its own or the dataset's statistics (``--input-norm``), with ``channels`` channels
    (default: the dataset's)."""
    data = ModelInput.of_dataset(info)
    if not is_zoo_name(cfg.model):
        return data
    channels = channels or info.channels
    stats = zoo_data_config(cfg.model) if cfg.input_norm == "model" else data
    return ModelInput(channels, int(cfg.input_size), stats_for(stats.mean, channels), stats_for(stats.std, channels))


def recorded_input(record: dict[str, Any], cfg: TrainConfig, info: DatasetInfo) -> ModelInput:
    """The input a run's network reads, as its ``config.json`` records it (runs before it was recorded: the rule)."""
    if "model_input" in record:
        return ModelInput.from_record(record["model_input"])
    return model_input(cfg, info)


def build_run_model(cfg: TrainConfig, info: DatasetInfo, reads: ModelInput | None = None) -> nn.Module:
    """The network of ``cfg.model`` sized for a dataset (image shape, or vocabulary and text model sizes).

    An image network reads ``reads`` (default: :func:`model_input`) and takes the dataset's batches through
    an input adapter (:mod:`kdtool.data.inputs`) where that differs from them.
    """
    if info.kind == "text":
        return build_model(cfg.model, info, embed_dim=cfg.embed_dim, hidden_size=cfg.hidden_size)
    reads = reads or model_input(cfg, info)
    model = build_model(cfg.model, replace(info, channels=reads.channels, image_size=reads.size))
    return attach_input_adapter(model, ModelInput.of_dataset(info), reads)


def pretrained_run_model(cfg: TrainConfig, info: DatasetInfo) -> tuple[nn.Module, LoadReport]:
    """The zoo network of ``cfg.model`` initialised from ``cfg.pretrained``, and what that loaded."""
    reads = model_input(cfg, info)
    model, report = load_pretrained(cfg.model, info.num_classes, reads.channels, reads.size, cfg.pretrained)
    return attach_input_adapter(model, ModelInput.of_dataset(info), reads), report


def run_vocabulary(run: RunDir) -> Vocabulary | None:
    """The vocabulary a text run was trained with, from its ``vocab.json`` (None for an image run)."""
    if run.config().get("dataset_info", {}).get("kind") != "text":
        return None
    return Vocabulary.load(run.path / VOCAB)


class NetworkUnavailable(KdtoolError):
    """A run whose network kdtool cannot rebuild: a module of the user's own, trained by ``kdtool.fit``.

    What needs only the run folder (curves, tables, options, Q) still works; ``what`` names the run and its
    module for notes of what is left out, the message says what needed the network.
    """

    def __init__(self, run: RunDir, model: str, needed_by: str) -> None:
        self.what = f"{model} is a module of your own (trained by kdtool.fit) that kdtool cannot rebuild"
        super().__init__(f"{needed_by} needs the network of {run.path}, and {self.what}; load its "
                         f"{MODEL} into your module with load_state_dict")  # fmt: skip


def load_run_model(
    run: RunDir, device: torch.device | str = "cpu", needed_by: str = "this command"
) -> tuple[nn.Module, TrainConfig, dict]:
    """Rebuild a run's network from its ``config.json`` and ``model.safetensors`` (eval mode).

    Returns the model, the run's config and its recorded dataset facts (class names, shape). A module of the
    user's own raises :class:`NetworkUnavailable` naming ``needed_by`` (what asked for the network).
    """
    record = run.training_config()
    if str(record.get("model", "")).startswith(PYTHON_PREFIX):
        raise NetworkUnavailable(run, record["model"], needed_by)
    cfg = config_of_record(record)
    info = record["dataset_info"]
    data = DatasetInfo.from_record(info)
    model = build_run_model(cfg, data, recorded_input(record, cfg, data) if data.kind == "image" else None)
    try:
        run.load_weights(model)
    except (RuntimeError, OSError) as exc:
        raise KdtoolError(f"{run.path / MODEL} does not fit a {cfg.model}: {exc}") from exc
    return model.to(device).eval(), cfg, info
