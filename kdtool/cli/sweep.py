"""``kdtool sweep``: run a grid of train-teacher runs, skipping finished ones, and summarise them."""

from __future__ import annotations

import csv
import dataclasses
import io
import shlex
from pathlib import Path
from typing import Annotated

import typer

from kdtool.cli import options as opt
from kdtool.cli.app import app, console, parse_int_list
from kdtool.cli.runner import PLAN_ONLY, PlannedRun, execute
from kdtool.errors import KdtoolError, RunDiverged
from kdtool.runs.sweep import SweepRun, expand, parse_grid

SUMMARY = "sweep.csv"
_SUMMARY_METRICS = ("test_acc", "test_macro_f1", "test_nll", "test_ece", "grad_norm", "generalization_error")


def _train_teacher_command(ctx: typer.Context) -> typer.core.TyperCommand:
    return ctx.parent.command.get_command(ctx.parent, "train-teacher")  # type: ignore[union-attr]


def _train_teacher_flags(command) -> dict[str, bool]:
    """Every flag of ``train-teacher`` and whether it takes a value."""
    flags: dict[str, bool] = {}
    for param in command.params:
        for flag in [*param.opts, *getattr(param, "secondary_opts", [])]:
            flags[flag] = not getattr(param, "is_flag", False)
    for own in ("--out", "--force", "--seeds", "--resume"):
        flags.pop(own, None)
    return flags


def _plan(ctx: typer.Context, command, run: SweepRun, folder: Path, force: bool) -> PlannedRun:
    """The train-teacher command line of one grid point, parsed and planned (nothing trained)."""
    args = [*run.args, "--out", str(folder), *(["--force"] if force else [])]
    with command.make_context("train-teacher", args, parent=ctx) as sub:
        sub.meta[PLAN_ONLY] = True  # meta is shared along the context chain: take it back afterwards
        try:
            (planned,) = command.invoke(sub)
        finally:
            sub.meta.pop(PLAN_ONLY)
    return dataclasses.replace(planned, label=run.name)


def _summary_rows(out: Path, runs: list[SweepRun]) -> list[dict[str, str]]:
    """One row per finished run: the swept values, then the metrics of the selected and of the last epoch."""
    from kdtool.runs.folder import MODEL, RunDir, selected_row

    rows = []
    for run in runs:
        folder = out / run.name
        if not (folder / MODEL).is_file():
            continue
        metrics = RunDir(folder).metrics()
        row = {"run": run.name, **run.values}
        for which, values in (("selected", selected_row(metrics)), ("last", metrics[-1])):
            row[f"{which}_epoch"] = values["epoch"]
            row.update({f"{which}_{k}": values[k] for k in _SUMMARY_METRICS if k in values})
        rows.append(row)
    return rows


def _write_summary(path: Path, rows: list[dict[str, str]]) -> None:
    from kdtool.fileio import atomic_write_text

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
    force: opt.Force = False,
) -> None:
    """Train every combination of comma-separated train-teacher options, one run folder each.

    Any train-teacher option may be given as a comma list (`--lr 0.1,0.01`); list-valued options
    (`--milestones`, `--lls-terms`, `--augment`, `--classes`) are swept by repeating the flag.
    `--smoothing prior:FILE` means `--smoothing prior --prior FILE`. Runs whose folder already holds
    model.safetensors and the same options are skipped, and interrupted ones resumed, so a sweep continues
    where it stopped; a finished run of other options is refused (--force retrains every grid point). The
    metrics of every finished run, at its selected epoch and at its last epoch, go to OUT/sweep.csv. A run
    that diverges does not stop the sweep: it is left out of sweep.csv and listed at the end (exit code 3).

    Each run is independent: `--print-commands` prints them, one per line, to spread over machines
    or GPUs (e.g. with GNU parallel or a job array) into the same --out folder.

    **Examples**

    ```
    kdtool make-prior semantic --dataset fashion-mnist --out priors/fmnist-semantic.q.safetensors
    kdtool sweep --lr 0.1,0.01,0.001,0.0001 --smoothing onehot,ls,prior:priors/fmnist-semantic.q.safetensors \\
        --seeds 0,1,2 --schedule constant --weight-decay 0 --epochs 30 --out runs/pls-dynamics
    kdtool sweep --alpha 0.1,0.2,0.4 --smoothing lls --epochs 10 --out runs/alpha --print-commands | parallel -j 2
    ```
    """
    command = _train_teacher_command(ctx)
    grid, fixed = parse_grid(ctx.args, _train_teacher_flags(command))
    if seeds:
        grid["--seed"] = [str(s) for s in parse_int_list(seeds, "--seeds")]
    runs = expand(grid, fixed)
    if print_commands:
        for run in runs:
            print(shlex.join(["kdtool", "train-teacher", *run.args, "--out", str(out / run.name)]))
        return
    planned = [_plan(ctx, command, run, out / run.name, force) for run in runs]  # every folder checked first
    out.mkdir(parents=True, exist_ok=True)
    diverged = None
    try:
        execute(planned, console, after_each=lambda: _write_summary(out / SUMMARY, _summary_rows(out, runs)))
    except RunDiverged as exc:  # the runs after a diverged one were trained: summarise them, then list it
        diverged = exc
    rows = _summary_rows(out, runs)
    if rows:
        _write_summary(out / SUMMARY, rows)
        console.print(f"{len(rows)} runs summarised in {out / SUMMARY} (selected and last epoch of each)",
                      soft_wrap=True)  # fmt: skip
    if diverged is not None:
        raise diverged
    if not rows:
        raise KdtoolError("sweep finished no run")
