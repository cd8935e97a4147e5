"""Which method ``train-teacher`` trains (``--smoothing``), built from its config.

:mod:`kdtool.losses` holds the losses, which take loaded objects; this module turns option values
into those objects (a frozen teacher from a run folder for tfkd-self, θ from a prior artifact). A
student's teacher (``--kd-loss`` from a teacher run or its cache, LLS-ST from a Q artifact) is built by
:mod:`kdtool.distill.teachers`.

Adding a training method = one module in ``losses/`` + one entry in :data:`METHODS`. A factory gets the
training count of each class (None where the data do not say up front: wds: shards), which the long-tail
methods need.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from kdtool.config.runconfig import TrainConfig
from kdtool.distill.teachers import frozen_teacher
from kdtool.errors import KdtoolError, unknown_choice
from kdtool.losses import (
    ClassWeighted,
    FocalLoss,
    LabelAwareSmoothing,
    LabelSmoothing,
    LearnableLabelSmoothing,
    LogitAdjusted,
    OneHot,
    OnlineLabelSmoothing,
    PriorSmoothing,
    Target,
    TeacherFreeRegularization,
    TeacherFreeSelf,
    ZipfLabelSmoothing,
    effective_number_weights,
)
from kdtool.q.matrix import QMatrix

Counts = Sequence[int] | None


def _tfkd_self(cfg: TrainConfig, num_classes: int, counts: Counts) -> Target:
    teacher, _, info, run = frozen_teacher(cfg.teacher, cfg)
    if len(info["class_names"]) != num_classes:
        raise KdtoolError(f"--teacher {run.path} has {len(info['class_names'])} classes, the data {num_classes}")
    return TeacherFreeSelf(teacher, cfg.tfkd_temperature, cfg.tfkd_weight, cfg.tfkd_multiplier)


def _prior(cfg: TrainConfig, num_classes: int, counts: Counts) -> Target:
    q = QMatrix.load(cfg.prior)
    if q.num_classes != num_classes:
        raise KdtoolError(f"--prior {cfg.prior} has {q.num_classes} classes, the data {num_classes}")
    return PriorSmoothing(q.probabilities(), cfg.epsilon)


def class_counts_of(what: str, counts: Counts) -> Sequence[int]:
    """``counts``, or a KdtoolError saying that ``what`` needs them and the data do not give them up front."""
    if counts is None:
        raise KdtoolError(f"{what} needs the training count of each class, which wds: shards do not give before "
                          f"training: use imagefolder:PATH or another dataset with labels up front")  # fmt: skip
    return counts


def _lls(cfg: TrainConfig, num_classes: int, counts: Counts) -> Target:
    if cfg.lls_correction != "none":
        counts = class_counts_of(f"--lls-correction {cfg.lls_correction}", counts)
    return LearnableLabelSmoothing(num_classes, cfg.alpha, cfg.lls_terms, cfg.q_update, cfg.lls_correction, counts,
                                   cfg.tau)  # fmt: skip


# --smoothing name -> factory(config, number of classes, training count of each class or None)
METHODS: dict[str, Callable[[TrainConfig, int, Counts], Target]] = {
    "onehot": lambda cfg, k, n: OneHot(),
    "ls": lambda cfg, k, n: LabelSmoothing(cfg.epsilon),
    "lls": _lls,
    "ols": lambda cfg, k, n: OnlineLabelSmoothing(k),
    "tfkd-reg": lambda cfg, k, n: TeacherFreeRegularization(
        k, cfg.tfkd_temperature, cfg.tfkd_weight, cfg.tfkd_multiplier, cfg.tfkd_correct_prob
    ),
    "tfkd-self": _tfkd_self,
    "zipf": lambda cfg, k, n: ZipfLabelSmoothing(cfg.zipf_weight, cfg.zipf_exponent),
    "focal": lambda cfg, k, n: FocalLoss(cfg.focal_gamma),
    "prior": _prior,
    "logit-adjust": lambda cfg, k, n: LogitAdjusted(class_counts_of("--smoothing logit-adjust", n), cfg.tau),
    "label-aware": lambda cfg, k, n: LabelAwareSmoothing(class_counts_of("--smoothing label-aware", n)),
}


def check_method(name: str) -> None:
    """Refuse an unknown ``--smoothing`` (before any work)."""
    if name not in METHODS:
        raise unknown_choice("smoothing method", name, tuple(METHODS))


def build_method(cfg: TrainConfig, num_classes: int, counts: Counts = None) -> Target:
    """The training method ``cfg.smoothing`` for ``num_classes`` classes with ``counts`` training samples each
    (None: not known up front), class-weighted where ``--class-weights`` says."""
    check_method(cfg.smoothing)
    return with_class_weights(METHODS[cfg.smoothing](cfg, num_classes, counts), cfg, counts)


def with_class_weights(method: Target, cfg: TrainConfig, counts: Counts) -> Target:
    """``method`` with each sample weighted by its class's ``--class-weights`` (itself for ``none``)."""
    if cfg.class_weights == "none":
        return method
    counts = class_counts_of(f"--class-weights {cfg.class_weights}", counts)
    return ClassWeighted(method, effective_number_weights(torch.as_tensor(counts), cfg.cb_beta))
