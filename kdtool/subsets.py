"""Choosing classes by name or index: one resolver shared by datasets, Q artifacts and teachers."""

from __future__ import annotations

from collections.abc import Sequence

from kdtool.errors import KdtoolError


def parse_name_list(spec: str) -> list[str]:
    """``"T-shirt/top,Pullover"`` -> names (whitespace around commas ignored)."""
    return [name.strip() for name in spec.split(",") if name.strip()]


def resolve_classes(
    class_names: Sequence[str], names: Sequence[str] | None = None, indices: Sequence[int] | None = None
) -> list[int]:
    """Indices of the kept classes, in the order given, from names *or* indices.

    Unknown names, out-of-range indices and duplicates are KdtoolErrors naming the culprit.
    """
    if (names is None) == (indices is None):
        raise KdtoolError("give the kept classes either by name (--classes) or by index (--class-indices)")
    if names is not None:
        lookup = {name: i for i, name in enumerate(class_names)}
        unknown = [n for n in names if n not in lookup]
        if unknown:
            raise KdtoolError(f"unknown class {unknown[0]!r}: the classes are {', '.join(class_names)}")
        chosen = [lookup[n] for n in names]
    else:
        chosen = list(indices)
        bad = [i for i in chosen if not 0 <= i < len(class_names)]
        if bad:
            raise KdtoolError(f"class index {bad[0]} is out of range 0..{len(class_names) - 1}")
    if len(chosen) < 2:
        raise KdtoolError("keep at least 2 classes")
    seen: set[int] = set()
    for i in chosen:
        if i in seen:
            raise KdtoolError(f"class {class_names[i]!r} is listed twice")
        seen.add(i)
    return chosen
