"""``kdtool batch``: kdtool command lines run one after the other in this one process."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from kdtool.cli.app import app, console
from kdtool.errors import KdtoolError

LinesArg = Annotated[str, typer.Argument(help="File of kdtool command lines, one a line; - reads standard input.",
                                         metavar="FILE", show_default=False)]  # fmt: skip
KeepGoing = Annotated[bool, typer.Option("--keep-going", help="Run every line even after one failed; the exit code "
                                         "is still the first failure's.")]  # fmt: skip


def read_commands(text: str, source: str) -> list[tuple[int, list[str]]]:
    """(line number, arguments after the program name) of every kdtool command line of ``text``.

    A line is a shell command line of ``kdtool`` (or a path ending in ``/kdtool``); blank lines and ``#`` comments
    are skipped. Every line is read before any runs: one that is not a kdtool command is refused."""
    commands = []
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{source}, line {number}"
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:  # an unclosed quote
            raise KdtoolError(f"{where}: {exc} (shell quoting): {line.strip()}") from None
        if not words:
            continue
        if Path(words[0]).name != "kdtool" or len(words) < 2:
            raise KdtoolError(f"{where} is not a kdtool command line: {line.strip()!r}; each line is one, e.g. "
                              f"kdtool train-teacher --smoothing lls --out runs/lls")  # fmt: skip
        if words[1] == "batch":
            raise KdtoolError(f"{where}: a batch does not run another batch: put that file's lines here instead")
        commands.append((number, words[1:]))
    if not commands:
        raise KdtoolError(f"{source} holds no kdtool command line")
    return commands


def _text(file: str) -> tuple[str, str]:
    """The text of ``file`` (``-``: standard input) and how to name it in messages."""
    if file == "-":
        return sys.stdin.read(), "standard input"
    try:
        return Path(file).read_text(encoding="utf-8"), file
    except (OSError, UnicodeDecodeError) as exc:
        raise KdtoolError(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None


@app.command("batch")
def batch(file: LinesArg, keep_going: KeepGoing = False) -> None:
    """Run kdtool command lines, one a line of FILE, one after the other in this one process.

    Python and torch start once instead of once a command (about 2 s of CPU each on a CPU machine): for many
    short runs, such as the recipes' trainings (recipes/common.sh runs them so when KDTOOL_JOBS is 1). Each
    line is a kdtool command as a shell takes it (quotes, a `#` comment); its output and errors are those it
    prints alone. Every line is read before the first runs. The batch stops at the first command that fails
    and exits with its code; `--keep-going` runs the others too (as `make -k`). Ctrl-C stops the batch.

    **Examples**

    ```
    kdtool batch runs.txt                 # each line a command: kdtool train-teacher ..., kdtool distill ...
    kdtool batch runs.txt --keep-going    # every line, also after one failed
    ```
    """
    from kdtool.cli import run_line  # the package imports this module to register the command

    text, source = _text(file)
    commands = read_commands(text, source)
    failed: list[tuple[int, int]] = []  # (line number, exit code)
    for index, (number, argv) in enumerate(commands, 1):
        console.rule(f"[{index}/{len(commands)}] {source}, line {number}: kdtool {argv[0]}")
        code = run_line(argv)
        if code:
            failed.append((number, code))
        if code == 130 or (code and not keep_going):
            break
    if failed:
        lines = ", ".join(f"line {number} (exit code {code})" for number, code in failed)
        left = len(commands) - index
        print(f"kdtool batch: {len(failed)} of {len(commands)} commands failed: {lines}"
              + (f"; {left} not run" if left else ""), file=sys.stderr)  # fmt: skip
        raise typer.Exit(failed[0][1])
