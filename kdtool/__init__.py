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
    "DISTKD": "kdtool.losses",
    "DecoupledKD": "kdtool.losses",
    "FrozenTeacher": "kdtool.losses",
    "KnowledgeDistillation": "kdtool.losses",
    "LearnableLabelSmoothing": "kdtool.losses",
    "NormalizedKD": "kdtool.losses",
    "QMatrix": "kdtool.q.matrix",
    "RowLazySGD": "kdtool.optim.lazysgd",
    "SparseLogits": "kdtool.q.matrix",
    "SubstituteTeacher": "kdtool.losses",
    "Target": "kdtool.losses",
    "WTTM": "kdtool.losses",
    "dist_loss": "kdtool.losses",
    "dkd_loss": "kdtool.losses",
    "fit": "kdtool.workflows.api",
    "kd_loss": "kdtool.losses",
    "label_smoothing_loss": "kdtool.losses",
    "nkd_loss": "kdtool.losses",
    "standardize_logits": "kdtool.losses",
    "wttm_loss": "kdtool.losses",
}

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from kdtool.losses import (  # noqa: F401
        DISTKD,
        WTTM,
        DecoupledKD,
        FrozenTeacher,
        KnowledgeDistillation,
        LearnableLabelSmoothing,
        NormalizedKD,
        SubstituteTeacher,
        Target,
        dist_loss,
        dkd_loss,
        kd_loss,
        label_smoothing_loss,
        nkd_loss,
        standardize_logits,
        wttm_loss,
    )
    from kdtool.optim.lazysgd import RowLazySGD  # noqa: F401
    from kdtool.q.matrix import QMatrix, SparseLogits  # noqa: F401
    from kdtool.workflows.api import fit  # noqa: F401


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'kdtool' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", *_LAZY]
