"""Fixed smoothing distributions θ (Preferential Label Smoothing) saved as Q artifacts.

Row y of θ says how the smoothing mass of class y is spread over the other classes (θ_yy = 0,
rows sum to 1). The artifact stores ``log θ`` (``-inf`` where θ is 0) with ``source=prior``, so
``softmax(Q[y]) = θ_y`` exactly and one file serves ``--smoothing prior``, ``distill
--substitute-q`` and the Q tools.

- superclass (PLS's CLS): θ_y uniform over the other members of y's group. A class alone in its
  group has no group mate to prefer: its row falls back to uniform over all other classes (LS).
- semantic (PLS's SEMLS): θ_yk ∝ 1/‖v_y − v_k‖ for k ≠ y, v = class-name word vectors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from kdtool.errors import KdtoolError
from kdtool.q.matrix import QMatrix


def load_groups(path: str | os.PathLike) -> dict[str, list[str]]:
    """A JSON object ``{group: [class names]}``; anything else is a KdtoolError naming the file."""
    path = Path(path)
    try:
        groups = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KdtoolError(f"cannot read groups file {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise KdtoolError(f"{path} is not valid JSON ({exc})") from exc
    valid = isinstance(groups, dict) and all(
        isinstance(v, list) and all(isinstance(n, str) for n in v) for v in groups.values()
    )
    if not valid:
        raise KdtoolError(f'{path} must be a JSON object {{"group": ["class name", ...], ...}}')
    return groups


def superclass_prior(class_names: Sequence[str], groups: Mapping[str, Sequence[str]]) -> tuple[torch.Tensor, list[str]]:
    """θ (K×K) uniform over each class's group mates, and the classes alone in their group.

    Every class must be in exactly one group and every group member must be a class.
    """
    index = {name: i for i, name in enumerate(class_names)}
    group_of: dict[str, str] = {}
    for group, members in groups.items():
        for name in members:
            if name not in index:
                raise KdtoolError(f"group {group!r} lists {name!r}, which is not a class of the dataset")
            if name in group_of:
                raise KdtoolError(f"class {name!r} is in two groups: {group_of[name]!r} and {group!r}")
            group_of[name] = group
    ungrouped = [n for n in class_names if n not in group_of]
    if ungrouped:
        raise KdtoolError(f"class {ungrouped[0]!r} is in no group (every class needs one; a group may have one class)")
    k = len(class_names)
    theta = torch.zeros(k, k)
    alone = []
    for y, name in enumerate(class_names):
        mates = [index[m] for m in groups[group_of[name]] if m != name]
        if not mates:  # nobody to prefer: spread the mass over every other class, as LS would
            alone.append(name)
            mates = [i for i in range(k) if i != y]
        theta[y, mates] = 1.0 / len(mates)
    return theta, alone


def semantic_prior(vectors: torch.Tensor, class_names: Sequence[str]) -> torch.Tensor:
    """θ (K×K) with θ_yk ∝ 1/‖v_y − v_k‖ over k ≠ y and θ_yy = 0, from class vectors (K×D)."""
    distances = torch.cdist(vectors.double(), vectors.double())
    off_diagonal = ~torch.eye(len(class_names), dtype=torch.bool)
    same = ((distances == 0) & off_diagonal).nonzero()
    if len(same):
        a, b = same[0].tolist()
        raise KdtoolError(f"classes {class_names[a]!r} and {class_names[b]!r} have the same vector: no distance")
    inverse = torch.where(off_diagonal, 1.0 / distances, torch.zeros_like(distances))
    return (inverse / inverse.sum(1, keepdim=True)).float()


def prior_q(
    theta: torch.Tensor,
    class_names: Sequence[str],
    alpha: float,
    dataset: str,
    kind: str,
    extra: Mapping[str, str] | None = None,
) -> QMatrix:
    """The Q artifact of θ: logits ``log θ`` (``-inf`` where θ is 0), ``source=prior``."""
    return QMatrix(theta.log(), list(class_names), alpha, dataset, source="prior",
                   extra={"prior": kind, **(extra or {})})  # fmt: skip
