"""Which method ``train-teacher`` trains (``--smoothing``), built from its config.

:mod:`kdtool.losses` holds the losses, which take loaded objects; this module turns option values
into those objects (a frozen teacher from a run folder for tfkd-self, θ from a prior artifact). A
student's teacher (``--kd-loss`` from a teacher run or its cache, LLS-ST from a Q artifact) is built by
:mod:`kdtool.distill.teachers`.

Adding a training method = one module in ``losses/`` + one entry in :data:`METHODS`.
"""

from __future__ import annotations

from collections.abc import Callable

from kdtool.config.runconfig import TrainConfig
from kdtool.distill.teachers import frozen_teacher
from kdtool.errors import KdtoolError, unknown_choice
from kdtool.losses import (
    FocalLoss,
    LabelSmoothing,
    LearnableLabelSmoothing,
    OneHot,
    OnlineLabelSmoothing,
    PriorSmoothing,
    Target,
    TeacherFreeRegularization,
    TeacherFreeSelf,
    ZipfLabelSmoothing,
)
from kdtool.q.matrix import QMatrix


def _tfkd_self(cfg: TrainConfig, num_classes: int) -> Target:
    teacher, _, info, run = frozen_teacher(cfg.teacher, cfg)
    if len(info["class_names"]) != num_classes:
        raise KdtoolError(f"--teacher {run.path} has {len(info['class_names'])} classes, the data {num_classes}")
    return TeacherFreeSelf(teacher, cfg.tfkd_temperature, cfg.tfkd_weight, cfg.tfkd_multiplier)


def _prior(cfg: TrainConfig, num_classes: int) -> Target:
    q = QMatrix.load(cfg.prior)
    if q.num_classes != num_classes:
        raise KdtoolError(f"--prior {cfg.prior} has {q.num_classes} classes, the data {num_classes}")
    return PriorSmoothing(q.probabilities(), cfg.epsilon)


# --smoothing name -> factory(config, number of classes)
METHODS: dict[str, Callable[[TrainConfig, int], Target]] = {
    "onehot": lambda cfg, k: OneHot(),
    "ls": lambda cfg, k: LabelSmoothing(cfg.epsilon),
    "lls": lambda cfg, k: LearnableLabelSmoothing(k, cfg.alpha, cfg.lls_terms, cfg.q_update),
    "ols": lambda cfg, k: OnlineLabelSmoothing(k),
    "tfkd-reg": lambda cfg, k: TeacherFreeRegularization(
        k, cfg.tfkd_temperature, cfg.tfkd_weight, cfg.tfkd_multiplier, cfg.tfkd_correct_prob
    ),
    "tfkd-self": _tfkd_self,
    "zipf": lambda cfg, k: ZipfLabelSmoothing(cfg.zipf_weight, cfg.zipf_exponent),
    "focal": lambda cfg, k: FocalLoss(cfg.focal_gamma),
    "prior": _prior,
}


def check_method(name: str) -> None:
    """Refuse an unknown ``--smoothing`` (before any work)."""
    if name not in METHODS:
        raise unknown_choice("smoothing method", name, tuple(METHODS))


def build_method(cfg: TrainConfig, num_classes: int) -> Target:
    """The training method ``cfg.smoothing`` for ``num_classes`` classes."""
    check_method(cfg.smoothing)
    return METHODS[cfg.smoothing](cfg, num_classes)
