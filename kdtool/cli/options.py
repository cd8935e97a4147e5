"""The training commands' options as Typer parameters, built from the option table (kdtool.config.options).

``train-teacher`` and ``distill`` take every option the table gives them (:class:`TableCommand`); other commands
take single options by the aliases below. Nothing here imports torch: ``--help`` stays fast.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from kdtool.config import options as table
from kdtool.config.options import DATA as DATA  # panels and help texts other commands share
from kdtool.config.options import METHOD as METHOD
from kdtool.config.options import MODEL_NAMES as MODEL_NAMES
from kdtool.config.options import RUN as RUN
from kdtool.config.options import ZOO as ZOO
from kdtool.config.options import Option
from kdtool.errors import KdtoolError


def annotation(option: Option) -> Any:
    """``Annotated[type, typer.Option(...)]`` of a table option: its flags, help, panel."""
    flags = option.flags or ((option.flag,) if option.type is bool else ())  # a flag, not --x/--no-x
    info = typer.Option(*flags, help=option.help, rich_help_panel=option.panel, metavar=option.metavar,
                        show_default=option.show_default)  # fmt: skip
    return Annotated[option.type, info]


def _alias(name: str) -> Any:
    """The annotation of the table option ``name`` as train-teacher declares it, for other commands' signatures."""
    return annotation(next(o for o in table.command_options(table.TRAIN) if o.name == name))


Out, Force, Resume, Seed, Device = (_alias(n) for n in ("out", "force", "resume", "seed", "device"))
Loader, Workers = (_alias(n) for n in ("loader", "workers"))
Dataset, DataRoot, Download, ImageSize = (_alias(n) for n in ("dataset", "data_root", "download", "image_size"))
LimitTrain, LimitTest, Augment, NoAugment = (_alias(n) for n in ("limit_train", "limit_test", "augment", "no_augment"))


class TableCommand:
    """A training command whose parameters are the option table's for ``command``: Typer reads its
    ``__signature__``, computed from the table each time the CLI is built, and calls it with every option's value.

    ``body(ctx, values)`` receives the options by name, parsed as the table declares (:meth:`Option.to_config`).
    """

    def __init__(self, command: str, body: Callable[[typer.Context, dict[str, Any]], Any]) -> None:
        self.command, self.body = command, body
        self.__name__, self.__qualname__, self.__module__ = body.__name__, body.__qualname__, body.__module__
        self.__doc__ = body.__doc__

    @property
    def __signature__(self) -> inspect.Signature:
        context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
        keyword = inspect.Parameter.KEYWORD_ONLY
        options = [inspect.Parameter(o.name, keyword, default=o.default, annotation=annotation(o))
                   for o in table.command_options(self.command)]  # fmt: skip
        return inspect.Signature([context, *options])

    @property
    def __annotations__(self) -> dict[str, Any]:  # read by typing.get_type_hints
        return {p.name: p.annotation for p in self.__signature__.parameters.values()}

    def __call__(self, ctx: typer.Context, **values: Any) -> Any:
        parsed = {}
        for option in table.command_options(self.command):
            parsed[option.name] = option.to_config(values[option.name]) if option.config else values[option.name]
        return self.body(ctx, parsed)


def config_values(values: dict[str, Any]) -> dict[str, Any]:
    """The config fields among a table command's ``values``; ``--no-augment`` is ``augment="none"``."""
    controls = {o.name for o in table.OPTIONS if not o.config}
    fields = {name: value for name, value in values.items() if name not in controls}
    if values.get("no_augment"):
        fields["augment"] = "none"
    return fields


def as_text(path: Path | None) -> str | None:
    """A path option as config.json records it."""
    return None if path is None else str(path)


def given_options(ctx: typer.Context) -> dict[str, str]:
    """The options typed on the command line, as ``{config name: flag}``.

    Defaults never count: only what the user wrote can be refused as not applying to the run.
    """
    given = {}
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is not None and source.name == "COMMANDLINE":
            flag = max(param.opts, key=len) if param.opts else param.name
            given[param.name] = flag
    if "augment" in given and "no_augment" in given:
        raise KdtoolError("--augment and --no-augment contradict each other: give one of them")
    if "no_augment" in given:
        given["augment"] = given.pop("no_augment")
    return given


def refuse_unused(ctx: typer.Context, uses: dict[str, tuple[bool, str]]) -> None:
    """Refuse options typed on the command line that this invocation will not use.

    ``uses``: parameter name -> (whether it is used now, what uses it), e.g.
    ``{"device": (from_teacher, "with --from-teacher")}``.
    """
    given = given_options(ctx)
    for name, (used, by) in uses.items():
        if name in given and not used:
            raise KdtoolError(f"{given[name]} does not apply here: it is used {by} only; remove it")
