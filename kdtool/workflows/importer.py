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
from kdtool.models.zoo import check_fits, data_config_source, input_and_head_layers, read_state_dict
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


# An imported network this close to chance (a multiple of 1/K) most likely reads inputs it was not trained on.
NEAR_CHANCE = 1.5


def input_origin(cfg: ImportConfig, given: dict[str, bool]) -> str:
    """Where the input size and normalisation of an import come from: the options given (``given``: flag ->
    whether the user gave it), else the zoo model's own data config, which the user's weights may not share."""
    typed = [flag for flag, was in given.items() if was]
    defaulted = [flag for flag, was in given.items() if not was]
    if not defaulted:
        return " and ".join(typed)
    source = data_config_source(cfg.model) if cfg.input_norm == "model" or not given["--input-size"] else "the data"
    first = f"{' and '.join(typed)}, else " if typed else ""
    return f"{first}{source}; your weights may need {' and '.join(defaulted)}"


def near_chance_note(cfg: ImportConfig, accuracy: float, num_classes: int) -> str | None:
    """A line for an imported network's accuracy near chance: which input options to check (None: not near)."""
    chance = 1 / num_classes
    if accuracy >= NEAR_CHANCE * chance:
        return None
    return (f"note: test accuracy {accuracy:.2%} is near chance ({chance:.2%} for {num_classes} classes): check "
            f"that --input-size ({cfg.input_size}) and --input-norm ({cfg.input_norm}) are those the weights were "
            f"trained with")  # fmt: skip


def import_run(cfg: ImportConfig, force: bool, console: Console) -> tuple[RunDir, dict[str, float]]:
    """Check everything, evaluate the imported network on the test split, then write its run folder:
    ``config.json`` (kind ``import``), ``model.safetensors`` and a one-row ``metrics.csv``. The first line says
    what inputs the network reads and where that came from; an accuracy near chance says what to check."""
    given = {"--input-size": cfg.input_size is not None, "--input-norm": cfg.input_norm is not None}
    cfg.resolve()
    plan_run(cfg.out, cfg.result_options(), force, resume=False)
    with stops_safely(cfg.out):
        dataset = load_data(cfg)
        model, reads = imported_network(cfg, dataset.info, read_state_dict(cfg.weights))
        device = select_device(cfg.device)
        console.print(f"{cfg.model} from {cfg.weights} on {dataset.info.name}'s test split ({len(dataset.test)} "
                      f"samples): inputs {reads.describe()} px, normalised by the {cfg.input_norm}'s statistics: "
                      f"{input_origin(cfg, given)}", soft_wrap=True)  # fmt: skip
        logits, labels = predict_split(model.to(device).eval(), cfg, dataset, "test", device)
        row = {"epoch": 0, **classification_metrics(logits, labels, prefix="test_"), "selected": 1}
        note = near_chance_note(cfg, row["test_acc"], dataset.info.num_classes)
        if note is not None:
            console.print(note, soft_wrap=True)
        run = RunDir.create(cfg.out, force)
        facts = {"dataset_info": dataset_record(dataset), "model_input": reads.to_record(),
                 "imported_weights": {"path": cfg.weights, "sha256": sha256_file(cfg.weights)},
                 "device_used": str(device), "selected_epoch": 0, "epochs_run": 0}  # fmt: skip
        run.write_config(cfg.kind, cfg.to_dict(), facts)
        run.save_model(model)
        run.write_metrics([row])
        return run, row
