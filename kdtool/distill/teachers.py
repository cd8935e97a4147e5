"""A student's teacher, built from its config: a teacher run's network frozen for inference, the run's
teacher cache, or a Q artifact (LLS-ST); sliced to the student's classes, with the provenance its
``config.json`` records. The losses themselves (:mod:`kdtool.losses`) take these loaded objects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kdtool.config.runconfig import DistillConfig, TrainConfig
from kdtool.data import DatasetInfo
from kdtool.distill.cache import TeacherCache
from kdtool.distributed import select_device
from kdtool.errors import KdtoolError
from kdtool.fileio import sha256_file
from kdtool.losses import (
    DISTKD,
    WTTM,
    DecoupledKD,
    DistillationTarget,
    FrozenTeacher,
    KnowledgeDistillation,
    NormalizedKD,
    SubstituteTeacher,
    log_prior,
)
from kdtool.q.matrix import QMatrix
from kdtool.q.subsets import source_class_index
from kdtool.runs.folder import MODEL, RunDir
from kdtool.training.accel import frozen_for_inference
from kdtool.training.runmodel import load_run_model


def frozen_teacher(path: str, cfg: TrainConfig) -> tuple[FrozenTeacher, TrainConfig, dict[str, Any], RunDir]:
    """The network of the run folder ``path``, frozen for inference; with its config, data facts and folder."""
    run = RunDir.open(path)
    network, teacher_cfg, info = load_run_model(run, needed_by="--teacher")
    # A frozen teacher runs inference only: channels-last pays on a CPU even without --channels-last.
    channels_last = cfg.channels_last or select_device(cfg.device).type == "cpu"
    return FrozenTeacher(frozen_for_inference(network, channels_last)), teacher_cfg, info, run


# --kd-loss name -> factory(config, frozen teacher network, teacher class index of the student's classes)
KD_LOSSES: dict[str, Callable[[DistillConfig, FrozenTeacher | None, list[int] | None], DistillationTarget]] = {
    "kd": lambda cfg, teacher, index: KnowledgeDistillation(teacher, cfg.beta, cfg.temperature, index,
                                                            cfg.logit_standardize, cfg.kd_weight),
    "dkd": lambda cfg, teacher, index: DecoupledKD(teacher, cfg.beta, cfg.dkd_alpha, cfg.dkd_beta, cfg.temperature,
                                                   cfg.dkd_warmup_epochs, index, cfg.logit_standardize),
    "dist": lambda cfg, teacher, index: DISTKD(teacher, cfg.beta, cfg.dist_beta, cfg.dist_gamma, cfg.temperature,
                                               index, cfg.logit_standardize),
    "wttm": lambda cfg, teacher, index: WTTM(teacher, cfg.beta, cfg.wttm_gamma, cfg.wttm_weight, index,
                                             cfg.logit_standardize),
    "nkd": lambda cfg, teacher, index: NormalizedKD(teacher, cfg.beta, cfg.nkd_gamma, cfg.temperature, index,
                                                    cfg.logit_standardize),
}  # fmt: skip


def distillation_target(
    cfg: DistillConfig,
    info: DatasetInfo,
    kept: list[int] | None,
    cache: TeacherCache | None = None,
    counts: list[int] | None = None,
) -> tuple[DistillationTarget | SubstituteTeacher, dict[str, Any]]:
    """A student's target (``--kd-loss`` from ``--teacher`` or from the ``--teacher-cache`` loaded as
    ``cache``, or LLS-ST from ``--substitute-q``), sliced to the kept classes, with ``--kd-balance`` from the
    student's training ``counts`` of each class, and the provenance its ``config.json`` records (with what
    ``--kd-preset`` set)."""
    if cfg.teacher is not None:
        target, record = _teacher_target(cfg, info, kept)
    elif cache is not None:
        target, record = _cached_teacher_target(cfg, info, kept, cache)
    else:
        return _substitute_target(cfg, info, kept)
    if cfg.kd_balance == "logit-adjust":
        if counts is None:
            raise KdtoolError("--kd-balance needs the training count of each class, which wds: shards do not give "
                              "before training")  # fmt: skip
        target.balance(cfg.tau * log_prior(counts))
    return target, {**record, **cfg.preset_record()}


def _cached_teacher_target(
    cfg: DistillConfig, info: DatasetInfo, kept: list[int] | None, cache: TeacherCache
) -> tuple[DistillationTarget, dict[str, Any]]:
    """No teacher network: the batches bring the cached logits (:class:`kdtool.distill.replay.ReplayLoader`)."""
    index = source_class_index(cache.class_names, info.class_names, kept, f"teacher cache {cache.path}")
    target = KD_LOSSES[cfg.kd_loss](cfg, None, index)
    record = {"teacher_cache_file": {"sha256": sha256_file(cache.path), "teacher_run": cache.teacher_run,
                                     "teacher_sha256": cache.teacher_sha256, "views": cache.views,
                                     "top_k": cache.top_k,
                                     "replay": cache.replay_line(cfg.augment)}}  # fmt: skip
    return target, record


def _teacher_target(
    cfg: DistillConfig, info: DatasetInfo, kept: list[int] | None
) -> tuple[DistillationTarget, dict[str, Any]]:
    teacher, teacher_cfg, teacher_info, run = frozen_teacher(cfg.teacher, cfg)
    trained_on = DatasetInfo.from_record(teacher_info)
    if trained_on.describe() != info.describe():
        raise KdtoolError(f"teacher run {run.path} was trained on {trained_on.describe()} but the student's dataset "
                          f"is {info.describe()}: they must agree")  # fmt: skip
    index = source_class_index(teacher_info["class_names"], info.class_names, kept, f"teacher run {run.path}")
    target = KD_LOSSES[cfg.kd_loss](cfg, teacher, index)
    record = {"teacher_run": {"path": str(run.path), "model_sha256": sha256_file(run.path / MODEL),
                              "model": teacher_cfg.model, "smoothing": teacher_cfg.smoothing}}  # fmt: skip
    return target, record


def _substitute_target(
    cfg: DistillConfig, info: DatasetInfo, kept: list[int] | None
) -> tuple[SubstituteTeacher, dict[str, Any]]:
    q = QMatrix.load(cfg.substitute_q)
    index = source_class_index(q.class_names, info.class_names, kept, f"Q artifact {cfg.substitute_q}")
    if index is not None:
        q = q.subset(index)
    record = {"q_artifact": {"path": cfg.substitute_q, "sha256": sha256_file(cfg.substitute_q)}}
    return SubstituteTeacher(q, cfg.alpha, cfg.beta, cfg.temperature), record
