"""kdtool: learnable label smoothing and knowledge distillation for PyTorch classifiers.

The public names below load on first use (PEP 562), so ``import kdtool`` and ``kdtool --help``
do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "DISTKD": "kdtool.targets",
    "DecoupledKD": "kdtool.targets",
    "FrozenTeacher": "kdtool.targets",
    "KnowledgeDistillation": "kdtool.targets",
    "LearnableLabelSmoothing": "kdtool.targets",
    "QMatrix": "kdtool.qmatrix",
    "RowLazySGD": "kdtool.lazysgd",
    "SparseLogits": "kdtool.qmatrix",
    "SubstituteTeacher": "kdtool.targets",
    "Target": "kdtool.targets",
    "dist_loss": "kdtool.targets",
    "dkd_loss": "kdtool.targets",
    "fit": "kdtool.api",
    "kd_loss": "kdtool.targets",
    "label_smoothing_loss": "kdtool.targets",
    "standardize_logits": "kdtool.targets",
}

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from kdtool.api import fit  # noqa: F401
    from kdtool.lazysgd import RowLazySGD  # noqa: F401
    from kdtool.qmatrix import QMatrix, SparseLogits  # noqa: F401
    from kdtool.targets import (  # noqa: F401
        DISTKD,
        DecoupledKD,
        FrozenTeacher,
        KnowledgeDistillation,
        LearnableLabelSmoothing,
        SubstituteTeacher,
        Target,
        dist_loss,
        dkd_loss,
        kd_loss,
        label_smoothing_loss,
        standardize_logits,
    )


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'kdtool' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", *_LAZY]
