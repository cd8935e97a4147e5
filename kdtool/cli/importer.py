"""``kdtool import``: a network trained elsewhere, as a run folder every other command reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdtool.cli import options as opt
from kdtool.cli.app import app, console

ImportModel = Annotated[str, typer.Option("--model", help="The network the weights belong to: " + opt.MODEL_NAMES,
                                          rich_help_panel=opt.METHOD, show_default=False)]  # fmt: skip
Weights = Annotated[Path, typer.Option(help="Its weights: a safetensors or PyTorch state-dict file (never "
                                       "unpickled), with one output per class of --dataset.",
                                       rich_help_panel=opt.METHOD, show_default=False)]  # fmt: skip
InputSize = Annotated[int | None, typer.Option(help="Square size the network reads; batches are resized on the "
                                               "device (default: a zoo model's own).", rich_help_panel=opt.ZOO,
                                               show_default=False)]  # fmt: skip
InputNorm = Annotated[str | None, typer.Option(help="Normalise inputs by the model's own mean/std or the "
                                               "dataset's: model (default) or dataset.", rich_help_panel=opt.ZOO,
                                               show_default=False)]  # fmt: skip
ImportSeed = Annotated[int, typer.Option(help="Seed that picks the --limit-test sample (import trains nothing).",
                                         rich_help_panel=opt.RUN)]  # fmt: skip


@app.command("import")
def import_(
    ctx: typer.Context,
    model: ImportModel,
    weights: Weights,
    out: opt.Out = Path("runs/imported"),
    dataset: opt.Dataset = "fashion-mnist",
    data_root: opt.DataRoot = None,
    download: opt.Download = False,
    image_size: opt.ImageSize = None,
    limit_test: opt.LimitTest = None,
    input_size: InputSize = None,
    input_norm: InputNorm = None,
    seed: ImportSeed = 0,
    device: opt.Device = "auto",
    force: opt.Force = False,
) -> None:
    """Evaluate a network trained elsewhere on a dataset's test split and write it as a run folder.

    The folder (config.json of kind import, model.safetensors, a one-row metrics.csv) is a run like any
    other: distill --teacher, export-q --from-teacher, evaluate, compare and tfkd-self take it. A zoo
    model reads its own input size and normalisation unless --input-size/--input-norm say otherwise;
    grey images are repeated to the channels an RGB network reads.

    **Examples**

    ```
    kdtool import --model timm:resnet10t --weights my-fmnist-resnet10t.safetensors --dataset fashion-mnist \\
        --input-size 28 --input-norm dataset --out runs/imported
    kdtool import --model torchvision:resnet18 --weights birds.pth --dataset imagefolder:./birds --out runs/birds
    kdtool distill --teacher runs/imported --student lenet5 --out runs/student
    ```
    """
    from kdtool.config.runconfig import ImportConfig
    from kdtool.workflows.importer import import_run

    cfg = ImportConfig(model=model, weights=str(weights), out=str(out), dataset=dataset,
                       data_root=opt.as_text(data_root), download=download, image_size=image_size,
                       limit_test=limit_test, input_size=input_size, input_norm=input_norm, seed=seed,
                       device=device)  # fmt: skip
    cfg.check_given(opt.given_options(ctx))
    run, row = import_run(cfg, force, console)
    console.print(f"test accuracy {row['test_acc']:.2%}  macro-F1 {row['test_macro_f1']:.4f}  NLL "
                  f"{row['test_nll']:.4f}  ECE {row['test_ece']:.4f}  -> run folder {run.path}",
                  soft_wrap=True)  # fmt: skip
