"""``kdtool import``: a network trained elsewhere becomes a run folder (kind ``import``), so every command that
reads a run (``distill --teacher``, ``export-q --from-teacher``, ``evaluate``, ``compare``, ``tfkd-self``)
takes it unchanged."""

from __future__ import annotations

from typing import Any

import torch
from rich.console import Console
from torch import nn

from kdtool.config.runconfig import ImportConfig
from kdtool.data import DatasetInfo
from kdtool.distributed import select_device
from kdtool.errors import KdtoolError
from kdtool.fileio import sha256_file
from kdtool.models.zoo import check_fits, input_and_head_layers, read_state_dict
from kdtool.runs.folder import RunDir, plan_run, stops_safely
from kdtool.training.metrics import classification_metrics
from kdtool.training.rundata import dataset_record, load_data, predict_split
from kdtool.training.runmodel import build_run_model, model_input


def imported_network(cfg: ImportConfig, info: DatasetInfo, state: dict[str, torch.Tensor]) -> tuple[nn.Module, Any]:
    """``cfg.model`` holding exactly the tensors ``state``, reading as many channels as its weights do, and
    what it reads. A head without one output per class, or weights of another network, is a one-line error."""
    model = build_run_model(cfg, info)
    first, head = input_and_head_layers(model)
    weight = state.get(f"{first}.weight")
    channels = int(weight.shape[1]) if weight is not None and weight.ndim == 4 else info.channels
    reads = model_input(cfg, info, channels)
    if channels != info.channels:  # an RGB network on grey images: they are repeated to its channels
        model = build_run_model(cfg, info, reads)
    outputs = state.get(f"{head}.weight")
    if outputs is not None and outputs.shape[0] != info.num_classes:
        raise KdtoolError(f"the head of {cfg.weights} ({head}) has {outputs.shape[0]} outputs but {info.name} has "
                          f"{info.num_classes} classes: import a network trained on them, or fine-tune this one "
                          f"with train-teacher --pretrained {cfg.weights}")  # fmt: skip
    check_fits(state, model.state_dict(), cfg.model, cfg.weights)
    model.load_state_dict(state)
    return model, reads


def import_run(cfg: ImportConfig, force: bool, console: Console) -> tuple[RunDir, dict[str, float]]:
    """Check everything, evaluate the imported network on the test split, then write its run folder:
    ``config.json`` (kind ``import``), ``model.safetensors`` and a one-row ``metrics.csv``."""
    cfg.resolve()
    plan_run(cfg.out, cfg.result_options(), force, resume=False)
    with stops_safely(cfg.out):
        dataset = load_data(cfg)
        model, reads = imported_network(cfg, dataset.info, read_state_dict(cfg.weights))
        device = select_device(cfg.device)
        console.print(f"{cfg.model} from {cfg.weights}, reading {reads.describe()} px inputs, on {dataset.info.name}'s "
                      f"test split ({len(dataset.test)} samples)", soft_wrap=True)  # fmt: skip
        logits, labels = predict_split(model.to(device).eval(), cfg, dataset, "test", device)
        row = {"epoch": 0, **classification_metrics(logits, labels, prefix="test_"), "selected": 1}
        run = RunDir.create(cfg.out, force)
        facts = {"dataset_info": dataset_record(dataset), "model_input": reads.to_record(),
                 "imported_weights": {"path": cfg.weights, "sha256": sha256_file(cfg.weights)},
                 "device_used": str(device), "selected_epoch": 0, "epochs_run": 0}  # fmt: skip
        run.write_config(cfg.kind, cfg.to_dict(), facts)
        run.save_model(model)
        run.write_metrics([row])
        return run, row
