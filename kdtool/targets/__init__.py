"""Training methods behind one interface, and the registry that builds them from a config.

Adding a method = one module with a :class:`Target` subclass + one entry in :data:`TARGETS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kdtool.errors import KdtoolError
from kdtool.targets.base import Target
from kdtool.targets.focal import FocalLoss
from kdtool.targets.lls import LLS_TERMS, LearnableLabelSmoothing, parse_lls_terms
from kdtool.targets.ols import OnlineLabelSmoothing
from kdtool.targets.prior import PriorSmoothing
from kdtool.targets.simple import LabelSmoothing, OneHot, label_smoothing_loss
from kdtool.targets.tfkd import TeacherFreeRegularization, TeacherFreeSelf
from kdtool.targets.zipf import ZipfLabelSmoothing

# name -> factory(config, num_classes); the config is any object with the method's options.
TARGETS: dict[str, Callable[[Any, int], Target]] = {
    "onehot": lambda cfg, k: OneHot(),
    "ls": lambda cfg, k: LabelSmoothing(cfg.epsilon),
    "lls": lambda cfg, k: LearnableLabelSmoothing(k, cfg.alpha, cfg.lls_terms),
    "ols": lambda cfg, k: OnlineLabelSmoothing(k),
    "tfkd-reg": lambda cfg, k: TeacherFreeRegularization(
        k, cfg.tfkd_temperature, cfg.tfkd_weight, cfg.tfkd_multiplier, cfg.tfkd_correct_prob
    ),
    "tfkd-self": lambda cfg, k: TeacherFreeSelf.from_run(
        cfg.teacher, k, temperature=cfg.tfkd_temperature, weight=cfg.tfkd_weight, multiplier=cfg.tfkd_multiplier
    ),
    "zipf": lambda cfg, k: ZipfLabelSmoothing(cfg.zipf_weight, cfg.zipf_exponent),
    "focal": lambda cfg, k: FocalLoss(cfg.focal_gamma),
    "prior": lambda cfg, k: PriorSmoothing.from_file(cfg.prior, k, cfg.epsilon),
}


def build_target(name: str, config: Any, num_classes: int) -> Target:
    """Build the method ``name`` for ``num_classes`` classes from the options in ``config``."""
    if name not in TARGETS:
        raise KdtoolError(f"unknown smoothing method {name!r}: choose one of {', '.join(TARGETS)}")
    return TARGETS[name](config, num_classes)


__all__ = [
    "LLS_TERMS",
    "TARGETS",
    "FocalLoss",
    "LabelSmoothing",
    "LearnableLabelSmoothing",
    "OneHot",
    "OnlineLabelSmoothing",
    "PriorSmoothing",
    "Target",
    "TeacherFreeRegularization",
    "TeacherFreeSelf",
    "ZipfLabelSmoothing",
    "build_target",
    "label_smoothing_loss",
    "parse_lls_terms",
]
