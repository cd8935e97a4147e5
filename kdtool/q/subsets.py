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


def source_class_index(
    source: Sequence[str], dataset: Sequence[str], kept: Sequence[int] | None, what: str
) -> list[int] | None:
    """Where the student's classes sit among the classes of a teacher run or Q artifact (``what``).

    ``dataset`` are the dataset's class names and ``kept`` the class subset (None: all classes).
    A source listing the dataset's classes gives ``kept``; one listing exactly the student's classes
    gives None (nothing to slice). Anything else is a KdtoolError naming the first differing class.
    """
    source, dataset = list(source), list(dataset)
    student = dataset if kept is None else [dataset[i] for i in kept]
    if source == student:
        return None
    if source == dataset:
        return list(kept)
    if len(source) != len(student) and len(source) != len(dataset):  # counts first: names of other data mislead
        fewer = len(source) < len(dataset)
        hint = f"pass --classes with {len(source)} of the data's classes" if fewer else "use one made for the data"
        raise KdtoolError(f"{what} has {len(source)} classes and the data {len(dataset)}"
                          f"{'' if kept is None else f' (the student keeps {len(student)})'}: {hint}")  # fmt: skip
    # Compare with what the source most plausibly was meant to be: the whole dataset, or the subset.
    subset_sized = kept is not None and len(source) == len(student)
    expected, where = (student, "the kept classes") if subset_sized else (dataset, "the dataset")
    for i, (have, want) in enumerate(zip(source, expected, strict=False)):
        if have != want:
            raise KdtoolError(f"{what} does not match {where}: its class {i} is {have!r}, expected {want!r}")
    first = expected[len(source)] if len(source) < len(expected) else source[len(expected)]
    raise KdtoolError(
        f"{what} does not match {where}: it has {len(source)} classes, expected {len(expected)} "
        f"(first unmatched: {first!r})"
    )
