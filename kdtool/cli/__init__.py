"""The ``kdtool`` command line: one small module per group of subcommands, each parsing and delegating."""

from __future__ import annotations

import sys

import typer

from kdtool.cli import batch, cache, distill, importer, prior, qtools, report, rerun, shard, sweep, train, zoo  # noqa: F401  (registers its subcommands)
from kdtool.cli.app import app
from kdtool.cli.helpstyle import install as install_help_style
from kdtool.errors import KdtoolError, RunDiverged, RunInterrupted, close_names
from kdtool.redact import redact

__all__ = ["app", "main"]

# One thing named differently per command: a student's network is distill's --student, a teacher's --model.
_SAME_THING = (("--model", "--student"),)


def _flags(command) -> list[str]:
    return [flag for param in getattr(command, "params", []) for flag in getattr(param, "opts", [])]


def _unknown_option(ctx, name: str) -> str:
    """``No such option: --model (did you mean --student?)``, and which other commands take it
    (``--student is an option of kdtool distill``)."""
    own = _flags(ctx.command)
    same = [b if name == a else a for a, b in _SAME_THING if name in (a, b)]
    close = [flag for flag in same if flag in own] or close_names(name, own)
    commands = getattr(ctx.find_root().command, "commands", {})
    others = sorted(other for other, command in commands.items() if other != ctx.info_name and name in _flags(command))
    hints = [f"did you mean {' or '.join(close)}?"] if close else []
    hints += [f"{name} is an option of kdtool {' and '.join(others)}"] if others else []
    return f"No such option: {name}" + (f" ({' '.join(hints)})" if hints else "")


def _usage_error_line(exc: Exception) -> str:
    ctx = getattr(exc, "ctx", None)
    where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    name = getattr(exc, "option_name", None)
    if ctx is not None and name is not None and type(exc).__name__ == "NoSuchOption":
        return f"error: {_unknown_option(ctx, name)}{where}"
    return f"error: {exc.format_message()}{where}"


def main_args(argv: list[str] | None) -> int:
    """Run one kdtool command line in this process; errors propagate as exceptions."""
    install_help_style()
    code = typer.main.get_command(app).main(args=argv, prog_name="kdtool", standalone_mode=False)
    return code if isinstance(code, int) else 0


def run_line(argv: list[str] | None) -> int:
    """Run one kdtool command line in this process and return its exit code: a user error prints one line on
    stderr and gives 2 (a diverged run: 3, an interrupted one: 130)."""
    try:
        return main_args(argv)
    except KdtoolError as exc:  # a message may quote an option's value: never its credentials
        print(redact(f"error: {exc}"), file=sys.stderr)
        return 2
    except RunInterrupted as exc:
        print(str(exc), file=sys.stderr)
        return 130
    except RunDiverged as exc:
        print(str(exc), file=sys.stderr)
        return 3
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except Exception as exc:
        # Typer raises click's usage errors (its own vendored copy in recent releases): match them by
        # their interface rather than by a class that moves between typer versions.
        if not (hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)):
            raise
        print(redact(_usage_error_line(exc)), file=sys.stderr)
        return exc.exit_code


def main(argv: list[str] | None = None) -> None:
    """Console entry point: exits with :func:`run_line`'s code."""
    sys.exit(run_line(argv))
