"""Training methods behind one interface: each turns (logits, labels, batch) into a loss.

This package is a leaf: its modules take loaded objects (a frozen teacher network, a θ tensor, a
Q matrix) and never read files or import the data, engine, pipeline or CLI layers. Which method a
run uses, and what it loads for it, is decided where the run is composed (:mod:`kdtool.workflows.methods`).
"""

from __future__ import annotations

from kdtool.losses.base import Target
from kdtool.losses.dist import DISTKD, dist_loss
from kdtool.losses.dkd import DecoupledKD, dkd_loss
from kdtool.losses.focal import FocalLoss
from kdtool.losses.kd import KnowledgeDistillation, SubstituteTeacher, kd_loss
from kdtool.losses.lls import LLS_CORRECTIONS, LLS_TERMS, LearnableLabelSmoothing, parse_lls_terms, resolve_q_update
from kdtool.losses.longtail import (
    ClassWeighted,
    LabelAwareSmoothing,
    LogitAdjusted,
    effective_number_weights,
    label_aware_epsilons,
    log_prior,
)
from kdtool.losses.nkd import NormalizedKD, nkd_loss
from kdtool.losses.ols import OnlineLabelSmoothing
from kdtool.losses.prior import PriorSmoothing
from kdtool.losses.simple import LabelSmoothing, OneHot, label_smoothing_loss
from kdtool.losses.teacher import DistillationTarget, FrozenTeacher, kl_divergence, standardize_logits
from kdtool.losses.tfkd import TeacherFreeRegularization, TeacherFreeSelf
from kdtool.losses.wttm import WTTM, wttm_loss
from kdtool.losses.zipf import ZipfLabelSmoothing

__all__ = [
    "DISTKD",
    "LLS_CORRECTIONS",
    "LLS_TERMS",
    "WTTM",
    "ClassWeighted",
    "DecoupledKD",
    "DistillationTarget",
    "FocalLoss",
    "FrozenTeacher",
    "KnowledgeDistillation",
    "LabelAwareSmoothing",
    "LabelSmoothing",
    "LearnableLabelSmoothing",
    "LogitAdjusted",
    "NormalizedKD",
    "OneHot",
    "OnlineLabelSmoothing",
    "PriorSmoothing",
    "SubstituteTeacher",
    "Target",
    "TeacherFreeRegularization",
    "TeacherFreeSelf",
    "ZipfLabelSmoothing",
    "dist_loss",
    "dkd_loss",
    "effective_number_weights",
    "kd_loss",
    "kl_divergence",
    "label_aware_epsilons",
    "label_smoothing_loss",
    "log_prior",
    "nkd_loss",
    "parse_lls_terms",
    "resolve_q_update",
    "standardize_logits",
    "wttm_loss",
]
