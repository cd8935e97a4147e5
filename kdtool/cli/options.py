"""Option declarations shared by the training commands (train-teacher, distill, ...).

Each alias carries its flag's help text once; a command lists the options it takes in its
signature and turns them into a :class:`~kdtool.config.TrainConfig` with :func:`config_from`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kdtool.cli.app import parse_int_list
from kdtool.config import TrainConfig

DATA, OPTIM, METHOD, RUN = "Data", "Optimisation", "Method", "Run"

Out = Annotated[Path, typer.Option(help="Run folder to create.", rich_help_panel=RUN)]
Force = Annotated[bool, typer.Option("--force", help="Replace an existing run folder.", rich_help_panel=RUN)]
Seed = Annotated[int, typer.Option(help="Seed of initialisation, shuffling and augmentation.",
                                   rich_help_panel=RUN)]  # fmt: skip
Device = Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda, cuda:1 ...", rich_help_panel=RUN)]

Dataset = Annotated[str, typer.Option(help="fashion-mnist (embedded), mnist, cifar10, cifar100, svhn, or "
                                      "imagefolder:PATH.", rich_help_panel=DATA)]  # fmt: skip
DataRoot = Annotated[Path | None, typer.Option(help="Folder of torchvision datasets.", rich_help_panel=DATA)]
Download = Annotated[bool, typer.Option("--download", help="Download torchvision datasets into --data-root.",
                                        rich_help_panel=DATA)]  # fmt: skip
ImageSize = Annotated[int, typer.Option(help="Square size imagefolder images are resized to.",
                                        rich_help_panel=DATA)]  # fmt: skip
LimitTrain = Annotated[int | None, typer.Option(help="Use at most N training samples (seeded).",
                                                rich_help_panel=DATA)]  # fmt: skip
LimitTest = Annotated[int | None, typer.Option(help="Use at most N test samples (seeded).", rich_help_panel=DATA)]
Augment = Annotated[bool, typer.Option(help="Random crop (and flip where it fits the data).",
                                       rich_help_panel=DATA)]  # fmt: skip

Model = Annotated[str, typer.Option(help="lenet5, alexnet, resnet18, resnet34, resnet50, mobilenet_v2.",
                                    rich_help_panel=METHOD)]  # fmt: skip
Smoothing = Annotated[str, typer.Option(help="Training method: onehot, ls or lls.", rich_help_panel=METHOD)]
Epsilon = Annotated[float, typer.Option(help="LS: smoothing mass ε in (0,1).", rich_help_panel=METHOD)]
Alpha = Annotated[float, typer.Option(help="LLS: mixing weight α in (0,1).", rich_help_panel=METHOD)]
LlsTerms = Annotated[
    str,
    typer.Option(
        help="LLS: terms to keep, 'all' or a comma list of target-entropy, forward-ce, prediction-entropy, reverse-ce.",
        rich_help_panel=METHOD,
    ),
]
QWeightDecay = Annotated[float | None, typer.Option(help="LLS: weight decay of Q (default: --weight-decay).",
                                                    rich_help_panel=METHOD)]  # fmt: skip

Epochs = Annotated[int, typer.Option(help="Training epochs.", rich_help_panel=OPTIM)]
BatchSize = Annotated[int, typer.Option(help="Batch size.", rich_help_panel=OPTIM)]
Lr = Annotated[float, typer.Option(help="Peak learning rate (SGD, momentum 0.9).", rich_help_panel=OPTIM)]
WeightDecay = Annotated[float, typer.Option(help="Weight decay of the network.", rich_help_panel=OPTIM)]
WarmupEpochs = Annotated[int | None, typer.Option(help="Linear warm-up epochs (default: min(5, epochs//10)).",
                                                  rich_help_panel=OPTIM)]  # fmt: skip
Milestones = Annotated[
    str,
    typer.Option(
        help="Epochs where the LR is multiplied by --gamma, e.g. 100,150 (default: 50% and 75% of --epochs).",
        rich_help_panel=OPTIM,
    ),
]
Gamma = Annotated[float, typer.Option(help="LR decay factor at each milestone.", rich_help_panel=OPTIM)]


def config_from(options: dict[str, Any], cls: type[TrainConfig] = TrainConfig) -> TrainConfig:
    """Build a config from a command's keyword arguments (paths -> str, list flags parsed)."""
    values = {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}
    if isinstance(values.get("milestones"), str):
        values["milestones"] = parse_int_list(values["milestones"], "--milestones")
    return cls.from_dict(values)
