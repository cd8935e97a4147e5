"""``kdtool sweep``: run a grid of train-teacher runs, skipping finished ones, and summarise them."""

from __future__ import annotations

import csv
import io
import shlex
from pathlib import Path
from typing import Annotated

import typer

from kdtool.checkpoint import checkpoint_path
from kdtool.cli.app import app, console, parse_int_list
from kdtool.errors import KdtoolError
from kdtool.fileio import atomic_write_text
from kdtool.runs import MODEL, RunDir
from kdtool.sweep import expand, parse_grid

SUMMARY = "sweep.csv"
_SUMMARY_METRICS = ("test_acc", "test_nll", "test_ece", "grad_norm", "generalization_error")


def _train_teacher_flags() -> dict[str, bool]:
    """Every flag of ``train-teacher`` and whether it takes a value."""
    group = typer.main.get_command(app)
    command = group.get_command(None, "train-teacher")  # type: ignore[arg-type]
    flags: dict[str, bool] = {}
    for param in command.params:
        for flag in [*param.opts, *getattr(param, "secondary_opts", [])]:
            flags[flag] = not getattr(param, "is_flag", False)
    flags.pop("--out", None)
    flags.pop("--force", None)
    return flags


def _summary_rows(out: Path, runs) -> list[dict[str, str]]:
    rows = []
    for run in runs:
        folder = out / run.name
        if not (folder / MODEL).is_file():
            continue
        last = RunDir(folder).metrics()[-1]
        rows.append({"run": run.name, **run.values, **{k: last[k] for k in _SUMMARY_METRICS if k in last}})
    return rows


def _write_summary(path: Path, rows: list[dict[str, str]]) -> None:
    if not rows:
        return
    buffer = io.StringIO()
    fields = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


@app.command(
    "sweep",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def sweep(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Folder that receives one run folder per grid point.")] = Path("runs/sweep"),
    seeds: Annotated[str, typer.Option(help="Comma list of seeds, swept like any other option.")] = "",
    print_commands: Annotated[
        bool, typer.Option("--print-commands", help="Print one train-teacher command per run and exit.")
    ] = False,
) -> None:
    """Train every combination of comma-separated train-teacher options, one run folder each.

    Any train-teacher option may be given as a comma list (`--lr 0.1,0.01`); list-valued options
    (`--milestones`, `--lls-terms`, `--augment`, `--classes`) are swept by repeating the flag.
    `--smoothing prior:FILE` means `--smoothing prior --prior FILE`. Runs whose folder already holds
    model.safetensors are skipped, so an interrupted sweep continues where it stopped. The last
    metrics of every finished run go to OUT/sweep.csv.

    Each run is independent: `--print-commands` prints them, one per line, to spread over machines
    or GPUs (e.g. with GNU parallel or a job array) into the same --out folder.

    **Examples**

    ```
    kdtool sweep --lr 0.1,0.01,0.001,0.0001 --smoothing onehot,ls,prior:artifacts/fmnist-semantic.q.safetensors \\
        --seeds 0,1,2 --schedule constant --weight-decay 0 --epochs 30 --out runs/pls-dynamics
    kdtool sweep --alpha 0.1,0.2,0.4 --smoothing lls --epochs 10 --out runs/alpha --print-commands | parallel -j 2
    ```
    """
    from kdtool.cli import main_args

    grid, fixed = parse_grid(ctx.args, _train_teacher_flags())
    if seeds:
        grid["--seed"] = [str(s) for s in parse_int_list(seeds, "--seeds")]
    runs = expand(grid, fixed)
    if print_commands:
        for run in runs:
            print(shlex.join(["kdtool", "train-teacher", *run.args, "--out", str(out / run.name)]))
        return
    out.mkdir(parents=True, exist_ok=True)
    for index, run in enumerate(runs, 1):
        folder = out / run.name
        if (folder / MODEL).is_file():
            console.print(f"[{index}/{len(runs)}] {run.name}: finished earlier, skipped")
            continue
        console.rule(f"[{index}/{len(runs)}] {run.name}")
        # A folder without weights is an interrupted run of this sweep: continue it, or restart it.
        again = ["--resume"] if checkpoint_path(folder).is_file() else ["--force"] if folder.exists() else []
        main_args(["train-teacher", *run.args, "--out", str(folder), *again])
        _write_summary(out / SUMMARY, _summary_rows(out, runs))
    rows = _summary_rows(out, runs)
    if not rows:
        raise KdtoolError("sweep finished no run")
    _write_summary(out / SUMMARY, rows)
    console.print(f"{len(rows)} runs summarised in {out / SUMMARY}")
