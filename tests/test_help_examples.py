"""Every example in every ``--help`` and every docs block marked runnable works as pasted (issue #32 item 11).

Help examples name the user's own runs and data (``runs/fmnist-lls``, ``~/data``), so each is checked as far as
it can be without them: it parses (every option exists, every value converts); a ``train-teacher`` or
``distill`` example is also planned (its options resolved and checked together, as a run would before any
work); every shipped file it reads (``artifacts/``, ``recipes/``) exists. A docs block marked runnable is run
for real, command after command, in a fresh folder, training at tiny sizes.

The marker: an HTML comment line ``<!-- runnable -->`` right above a fenced code block (invisible in the built
site). Its commands may start with ``kdtool`` or ``.venv/bin/kdtool``; a ``# comment`` ends a line.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main

from kdtool.cli import app, main
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- runnable -->"
# options whose value is written, not read: an example may name a file there that is not shipped
WRITES = {"--out", "--heatmap", "--plot", "--plot-dynamics", "--confusion"}
PLANNED = ("train-teacher", "distill")  # training commands: planned without training
# options whose value is the user's own input (a run, data, weights): a training example naming one is only parsed
USERS_INPUTS = {"--teacher", "--teacher-cache", "--word-vectors", "--weights", "--groups", "--resume"}


def command_lines(block: str) -> list[list[str]]:
    """The kdtool command lines of a code block as argument lists (continuations joined, comments, pipes and
    redirections cut, the program name dropped)."""
    lines = []
    for line in re.sub(r"\\\n\s*", " ", block).splitlines():
        words = shlex.split(line, comments=True)
        for cut in ("|", ">", "&&"):
            words = words[: words.index(cut)] if cut in words else words
        if words and Path(words[0]).name == "kdtool":
            lines.append(words[1:])
    return lines


def help_examples() -> list[tuple[str, list[str]]]:
    """(command, example arguments) of every example of every command's help, nested groups included."""
    found = []

    def visit(command, path: str) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            visit(sub, f"{path} {name}".strip())
        text = getattr(command, "help", None) or ""
        if "**Examples**" in text:
            for block in re.findall(r"```\n(.*?)```", text.split("**Examples**", 1)[1], flags=re.DOTALL):
                found.extend((path, args) for args in command_lines(block))

    visit(typer.main.get_command(app), "")
    return found


EXAMPLES = help_examples()


def runnable_blocks() -> list[tuple[str, str]]:
    """(where, block) of every fenced block marked runnable in the README and docs/."""
    blocks = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(re.escape(MARKER) + r"\n```[^\n]*\n(.*?)```", text, flags=re.DOTALL):
            blocks.append((f"{page.name}:{text[: match.start()].count(chr(10)) + 1}", match.group(1)))
    return blocks


def parse(args: list[str]) -> None:
    """Parse a command line as the CLI would, without running it (unknown options, bad values raise)."""
    command, name, rest, ctx = typer.main.get_command(app), "kdtool", list(args), None
    while hasattr(command, "commands"):  # a group: its subcommand is the next word
        ctx = command.make_context(name, [], parent=ctx, resilient_parsing=True)
        name, rest = rest[0], rest[1:]
        command = command.get_command(ctx, name)
        assert command is not None, f"kdtool has no command {name!r}"
    command.make_context(name, rest, parent=ctx)


def test_every_command_has_examples_and_they_were_found():
    assert len(EXAMPLES) > 50
    assert {"train-teacher", "distill", "compare", "report", "inspect-q"} <= {c for c, _ in EXAMPLES}


@pytest.mark.parametrize("command, args", EXAMPLES, ids=[" ".join(a)[:70] for _, a in EXAMPLES])
def test_a_help_example_parses_and_reads_only_shipped_files(command, args):
    parse(args)
    read = [a for before, a in zip(["", *args[:-1]], args, strict=True) if before not in WRITES]
    missing = [a for a in read if a.startswith(("artifacts/", "recipes/")) and not (ROOT / a).exists()]
    assert not missing, f"kdtool {shlex.join(args)} reads {missing}, which kdtool does not ship"


def plannable(args: list[str]) -> bool:
    """A training example that reads nothing of the user's own (runs, data folders, weights, vectors)."""
    return not (USERS_INPUTS & set(args)) and not any(a.startswith(("imagefolder:", "text:", "wds:")) for a in args)


@pytest.mark.parametrize(
    "args", [a for c, a in EXAMPLES if c in PLANNED and plannable(a)], ids=lambda a: " ".join(a)[:70]
)
def test_a_training_example_is_planned_without_complaint(args, monkeypatch, tmp_path, capsys):
    """Planned (options resolved and checked together, the output folder checked) but not trained; examples that
    continue or read a run of the user's own are left to the parse test."""
    import kdtool.cli.runner as runner

    monkeypatch.setattr(runner, "execute", lambda planned, console, after_each=None: None)
    for shipped in ("artifacts", "recipes"):
        (tmp_path / shipped).symlink_to(ROOT / shipped)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main([*args, *TINY])
    assert info.value.code == 0, capsys.readouterr().err


@pytest.mark.slow  # real (tiny) training runs
@pytest.mark.parametrize("where, block", runnable_blocks(), ids=[w for w, _ in runnable_blocks()])
def test_a_runnable_docs_block_runs_as_pasted(where, block, run_cli, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for args in command_lines(block):
        tiny = TINY if args[0] in PLANNED else ()
        code, _, err = run_cli(*args, *tiny)
        assert code == 0, f"{where}: kdtool {shlex.join(args)}: {err}"
