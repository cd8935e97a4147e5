"""The Typer application object and small parsing helpers shared by every subcommand module."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.console import Console

from kdtool import __version__
from kdtool.config.options import parse_int_list as parse_int_list  # shared by the subcommand modules
from kdtool.reporting.display import OutputConsole

app = typer.Typer(
    name="kdtool",
    help="Label smoothing (1-hot, LS, learnable LS) and knowledge distillation for PyTorch classifiers.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
# Under torchrun only rank 0 talks; the other ranks train silently. Into a pipe or a file it prints plain,
# unwrapped lines (see kdtool.reporting.display.OutputConsole).
console: Console = OutputConsole(quiet=os.environ.get("RANK", "0") != "0")


def _version(value: bool) -> None:
    if value:
        print(f"kdtool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:  # fmt: skip
    """kdtool trains teachers with 1-hot, LS or Learnable Label Smoothing (LLS), exports the learned
    class-similarity matrix Q, and distills students from a teacher or from Q alone."""
