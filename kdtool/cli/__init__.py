"""The ``kdtool`` command line: one small module per group of subcommands, each parsing and delegating."""

from __future__ import annotations

import sys

import typer

from kdtool.cli import cache, distill, importer, prior, qtools, report, rerun, shard, sweep, train, zoo  # noqa: F401  (registers its subcommands)
from kdtool.cli.app import app
from kdtool.cli.helpstyle import install as install_help_style
from kdtool.errors import KdtoolError, RunDiverged, RunInterrupted
from kdtool.redact import redact

__all__ = ["app", "main"]


def _usage_error_line(exc: Exception) -> str:
    ctx = getattr(exc, "ctx", None)
    where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return f"error: {exc.format_message()}{where}"


def main_args(argv: list[str] | None) -> int:
    """Run one kdtool command line in this process; errors propagate as exceptions."""
    install_help_style()
    code = typer.main.get_command(app).main(args=argv, prog_name="kdtool", standalone_mode=False)
    return code if isinstance(code, int) else 0


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors print one line on stderr and exit with code 2 (a diverged run: 3)."""
    try:
        code = main_args(argv)
    except KdtoolError as exc:  # a message may quote an option's value: never its credentials
        print(redact(f"error: {exc}"), file=sys.stderr)
        sys.exit(2)
    except RunInterrupted as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(130)
    except RunDiverged as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(3)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        # Typer raises click's usage errors (its own vendored copy in recent releases): match them by
        # their interface rather than by a class that moves between typer versions.
        if not (hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)):
            raise
        print(redact(_usage_error_line(exc)), file=sys.stderr)
        sys.exit(exc.exit_code)
    sys.exit(code)
