"""Grids of training runs: the cartesian product of option lists, one run folder per combination.

A sweep is a list of ``train-teacher`` argument lists. Each run is independent, so a sweep can be
run here one run after another, or printed (``--print-commands``) and fanned out over machines.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kdtool.errors import KdtoolError

# Options whose single value is itself a comma list: never split them into sweep values.
LIST_VALUED = {"--milestones", "--lls-terms", "--augment", "--classes", "--class-indices", "--seeds", "--log"}


@dataclass(frozen=True)
class SweepRun:
    """One point of the grid: its folder name, the swept values and the full argument list."""

    name: str
    values: dict[str, str]
    args: list[str]


def parse_grid(args: Sequence[str], takes_value: Mapping[str, bool]) -> tuple[dict[str, list[str]], list[str]]:
    """Split ``--flag a,b`` pairs into swept lists; boolean flags and list-valued options pass through.

    A flag given several times is swept over its occurrences (the way to sweep a list-valued option).
    Returns ``(grid, fixed_args)``.
    """
    grid: dict[str, list[str]] = {}
    fixed: list[str] = []
    tokens = list(args)
    while tokens:
        flag = tokens.pop(0)
        if flag not in takes_value:
            raise KdtoolError(f"sweep: unknown train-teacher option {flag!r}")
        if not takes_value[flag]:
            fixed.append(flag)
            continue
        if not tokens:
            raise KdtoolError(f"sweep: {flag} needs a value")
        value = tokens.pop(0)
        values = [value] if flag in LIST_VALUED else [v for v in value.split(",") if v != ""]
        grid.setdefault(flag, []).extend(values)
    return grid, fixed


def _slug(value: str) -> str:
    """A folder-name-safe form of an option value (``prior:dir/fm.q.safetensors`` -> ``prior-fm``)."""
    if ":" in value:
        method, path = value.split(":", 1)
        value = f"{method}-{Path(path).name.split('.')[0]}"
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", value).strip("-")


def expand(grid: Mapping[str, list[str]], fixed: Sequence[str]) -> list[SweepRun]:
    """Every combination of the grid's values, named by the options that actually vary."""
    keys = list(grid)
    varying = [k for k in keys if len(grid[k]) > 1]
    runs = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = dict(zip(keys, combo, strict=True))
        args: list[str] = []
        for flag, value in values.items():
            if flag == "--smoothing" and ":" in value:  # prior:FILE names a prior artifact
                method, path = value.split(":", 1)
                args += [flag, method, "--prior", path]
            else:
                args += [flag, value]
        name = "_".join(f"{k.lstrip('-')}-{_slug(values[k])}" for k in varying) or "run"
        runs.append(SweepRun(name, {k.lstrip("-"): values[k] for k in varying}, [*args, *fixed]))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise KdtoolError("sweep: two grid points get the same folder name; give distinct values")
    return runs
