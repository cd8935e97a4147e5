"""``--help`` that can be pasted: examples verbatim, metavars as a person writes them.

Typer renders help through rich; three of its defaults get in the way of a user who copies from it:
code blocks are re-wrapped (or cut) at the terminal width, so a long example command no longer pastes;
every option shows its Python type (``<bool>`` on flags, ``<str>``); and a required argument reads
``{run}``. :func:`install` adjusts exactly those three, once, before help is printed: the examples
are printed after the options as plain lines (the terminal folds a long one, a copy pastes it whole).
Each adjustment checks that the Typer/rich internals it relies on exist, and leaves the default
rendering alone where they do not.
"""

from __future__ import annotations

import re
from typing import Any

# A command's docstring ends with this heading and one fenced block of example commands, one a line.
EXAMPLES = "**Examples**"
# Typer's type labels -> what a person writes in a usage line
_METAVARS = {"<int>": "N", "<float>": "NUMBER", "<str>": "TEXT", "<path>": "PATH"}


def install() -> None:
    """Apply the three adjustments (idempotent)."""
    _verbatim_examples()
    _human_metavars()


def _verbatim_examples() -> None:
    from typer import rich_utils

    render = rich_utils.rich_format_help
    if getattr(render, "kdtool_examples", False):
        return

    def rich_format_help(*, obj: Any, ctx: Any, markup_mode: Any) -> None:
        text = obj.help or ""
        head, marker, tail = text.partition(EXAMPLES)
        if not marker:
            return render(obj=obj, ctx=ctx, markup_mode=markup_mode)
        obj.help = head.rstrip()
        try:
            render(obj=obj, ctx=ctx, markup_mode=markup_mode)
        finally:
            obj.help = text
        block = tail.split("```")[1]
        commands = re.sub(r"\\\n\s*", "", block).splitlines()  # a long example is one command a line
        print("Examples:\n" + "".join(f"  {c.strip()}\n" for c in commands if c.strip()), flush=True)

    rich_format_help.kdtool_examples = True  # type: ignore[attr-defined]
    rich_utils.rich_format_help = rich_format_help


def _human_metavars() -> None:
    from typer.core import TyperArgument, TyperOption

    if hasattr(TyperOption, "display_type_rich"):
        typed = TyperOption.display_type_rich

        def display_type_rich(self: Any, ctx: Any) -> str | None:
            if self.metavar is None and getattr(self, "is_flag", False):
                return None  # a flag takes no value
            label = typed(self, ctx)
            return _METAVARS.get(label, label) if isinstance(label, str) else label

        TyperOption.display_type_rich = display_type_rich
    if hasattr(TyperArgument, "display_type_rich"):
        TyperArgument.display_type_rich = lambda self, ctx: None  # its name (RUN, Q, RUNS...) says it

    if hasattr(TyperArgument, "_usage_display_name"):

        def usage_name(self: Any) -> str:
            name = self.display_name_raw.upper() if self.metavar is None else self.metavar
            name = name if self.required else f"[{name}]"
            return name + ("..." if self.nargs != 1 else "")

        TyperArgument._usage_display_name = usage_name
