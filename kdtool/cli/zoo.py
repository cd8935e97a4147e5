"""``kdtool models``: the networks ``--model`` and ``--student`` take."""

from __future__ import annotations

import importlib.metadata
from typing import Annotated

import typer

from kdtool.cli.app import app, console

Pattern = Annotated[str, typer.Argument(help="Show only names containing this text, or matching this glob "
                                        "(resnet*, *vit*); ZOO:PATTERN lists one zoo (timm:, torchvision:).",
                                        show_default=False)]  # fmt: skip


@app.command("models")
def models(pattern: Pattern = "") -> None:
    """List the models kdtool trains: its own (with a line each), then timm's and torchvision's.

    **Examples**

    ```
    kdtool models
    kdtool models resnet
    kdtool models "timm:*vit*"
    kdtool models torchvision:
    ```
    """
    from kdtool.models.registry import DESCRIPTIONS, MODELS
    from kdtool.models.zoo import TIMM_INSTALL, ZOOS, matches, matching, timm_available, zoo_names

    zoo, sep, rest = pattern.partition(":")
    zoos = [zoo] if sep and zoo in ZOOS else list(ZOOS)
    pattern = rest if sep and zoo in ZOOS else pattern
    if len(zoos) > 1:
        own = [name for name in MODELS if matches(name, pattern)]
        console.print(f"kdtool's own ({len(own)} of {len(MODELS)}):")
        width = max(map(len, MODELS))
        for name in own:
            console.print(f"  {name:<{width}}  {DESCRIPTIONS[name]}", soft_wrap=True)
    for name in zoos:
        if name == "timm" and not timm_available():
            console.print(f"timm: not installed; {TIMM_INSTALL}", soft_wrap=True, markup=False)
            continue
        found = matching(name, pattern)
        version = importlib.metadata.version(name)
        console.print(f"{name} {version} ({len(found)} of {len(zoo_names(name))}):")
        for entry in found:
            console.print(f"  {entry}", soft_wrap=True)
