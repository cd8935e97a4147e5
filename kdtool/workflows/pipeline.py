"""From resolved options to a finished run folder: data -> model -> target -> engine -> files."""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from kdtool.config.runconfig import DistillConfig, TrainConfig
from kdtool.data import BatchLoader, Dataset
from kdtool.data.augment import parse_augment
from kdtool.data.shards import is_wds
from kdtool.data.stream import LoaderChoice, default_budget, is_streamed, parse_bytes
from kdtool.data.text import dataset_vocabulary
from kdtool.distill.cache import TeacherCache, data_options
from kdtool.distill.replay import ReplayLoader, replay_stream
from kdtool.distill.teachers import distillation_target
from kdtool.distributed import (
    DistEnv,
    barrier,
    init_from_env,
    is_main_process,
    max_divergence,
    shutdown,
)
from kdtool.errors import KdtoolError, RunDiverged, RunInterrupted, divergence_line
from kdtool.fileio import sha256_file
from kdtool.losses import SubstituteTeacher, Target
from kdtool.models.text import load_word_vectors
from kdtool.models.zoo import HUB
from kdtool.q.matrix import QMatrix
from kdtool.q.subsets import resolve_classes
from kdtool.reporting.display import EpochDisplay
from kdtool.reporting.qreport import HEATMAP_MAX_CLASSES, q_heatmap_png
from kdtool.runs.folder import MODEL, VOCAB, Q, RunDir, plan_run, selected_row, stops_safely
from kdtool.trackers import RunInfo, Trackers, parse_log
from kdtool.training.accel import maybe_compile, resolve_accel
from kdtool.training.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from kdtool.training.engine import Trainer, seed_everything, unwrap_model
from kdtool.training.metrics import IMBALANCE_FROM, is_imbalanced, shot_groups
from kdtool.training.rundata import (  # _transform, _stream_loader: shared with make_loaders
    _stream_loader,
    _transform,
    choose_data_path,
    dataset_record,
    evaluation_loader,
    load_data,
    load_full_data,
    select_data,
    train_class_counts,
    training_split,
)
from kdtool.training.runmodel import build_run_model, model_input, pretrained_run_model, run_vocabulary
from kdtool.training.selection import ModelSelector
from kdtool.workflows.methods import build_method, with_class_weights

# Trackers get the Q heatmap of an LLS run every this many epochs, and the kept Q at the end.
Q_IMAGE_EVERY = 5


def init_model(cfg: TrainConfig, dataset: Dataset, console: Console) -> nn.Module:
    """A freshly initialised network for a run; a zoo model starts from ``--pretrained`` weights and a text
    model's embedding from ``--word-vectors`` if given."""
    if cfg.pretrained is not None:
        model, report = pretrained_run_model(cfg, dataset.info)
        console.print(f"{cfg.model} from --pretrained {cfg.pretrained}: {report.describe()}", soft_wrap=True)
    else:
        model = build_run_model(cfg, dataset.info)
    if cfg.word_vectors is not None:
        found = load_word_vectors(model, dataset_vocabulary(dataset), cfg.word_vectors)
        console.print(f"word vectors for {found} of {dataset.info.vocab_size} vocabulary entries "
                      f"from {cfg.word_vectors}")  # fmt: skip
    return model


def make_loaders(
    dataset: Dataset,
    cfg: TrainConfig,
    device: torch.device,
    env: DistEnv = DistEnv(),
    teacher_cache: TeacherCache | None = None,
    note=print,
) -> tuple[BatchLoader, BatchLoader]:
    """The shuffled, augmented training loader (this rank's part under torchrun; replaying ``teacher_cache``'s
    views and logits where given) and the ordered test loader; streamed from files where ``dataset`` is
    (``note`` tells of skipped bad samples)."""
    augment = parse_augment(cfg.augment)
    common = {"shuffle": True, "seed": cfg.seed, "rank": env.rank, "world_size": env.world_size}
    transform = _transform(dataset, augment)
    if is_streamed(dataset):
        train = _stream_loader(dataset, "train", cfg.batch_size, device, cfg, note, train=True,
                               augment=bool(augment), **common)  # fmt: skip
        if teacher_cache is not None:
            replay_stream(train, teacher_cache, list(dataset.info.class_names))
        return train, evaluation_loader(dataset, "test", cfg.eval_batch_size, device, cfg, note)
    if teacher_cache is None:
        train = BatchLoader(dataset.train, cfg.batch_size, transform, device, augment=bool(augment), **common)
    else:
        rows = teacher_cache.rows_of(dataset.train.sample_ids())
        train = ReplayLoader(dataset.train, cfg.batch_size, transform, device, teacher_cache, rows, augment, **common)
    return train, evaluation_loader(dataset, "test", cfg.eval_batch_size, device)


@dataclass
class _Fitting:
    """One process's part of a run as ``fit``'s setup leaves it for the epoch loop and the finalisation."""

    cfg: TrainConfig
    env: DistEnv
    dataset: Dataset  # with its validation split, where ``--val-fraction`` asks for one
    counts: list[int] | None  # the training count of each class (None: not known before training, wds:)
    model: nn.Module  # in DistributedDataParallel under torchrun
    target: Target
    trainer: Trainer
    selector: ModelSelector
    run: RunDir
    rows: list[dict[str, float]]  # one per epoch done, a resumed run's earlier ones included
    note: Callable[[str], None]  # prints on rank 0 only
    shown: Console  # the console on rank 0, a quiet one on the other ranks


def fit(
    cfg: TrainConfig,
    dataset: Dataset,
    model: nn.Module,
    target: Target,
    force: bool,
    console: Console,
    record: dict[str, Any] | None = None,
    title: str = "",
    resume: bool = False,
    teacher_cache: TeacherCache | None = None,
) -> tuple[RunDir, list[dict[str, float]]]:
    """Train ``model`` with ``target`` and write the complete run folder ``cfg.out`` (the training batches
    replaying ``teacher_cache``, where given).

    Under torchrun the model is wrapped in DistributedDataParallel and only rank 0 prints, writes
    and reports to the ``--log`` trackers. A checkpoint is written after every epoch; ``resume``
    continues from it (and the trackers' logged run from its next epoch).
    """
    fitting = _setup(cfg, dataset, model, target, force, console, record, resume, teacher_cache)
    trackers = _open_trackers(fitting)
    _loop(fitting, trackers, title)
    _finalize(fitting, trackers)
    run, rows, env = fitting.run, fitting.rows, fitting.env
    # The trainer and its DDP model, which hold the process group, sit in reference cycles: left to the
    # garbage collector they can outlive destroy_process_group until interpreter exit, where gloo's threads
    # then abort the process (SIGABRT after a successful run). Free them first.
    del fitting
    if env.enabled:
        gc.collect()
    shutdown(env)
    return run, rows


def _setup(
    cfg: TrainConfig,
    dataset: Dataset,
    model: nn.Module,
    target: Target,
    force: bool,
    console: Console,
    record: dict[str, Any] | None,
    resume: bool,
    teacher_cache: TeacherCache | None,
) -> _Fitting:
    """``fit``'s setup: device, mixed precision, compilation and DDP, the loaders and the trainer, then the run
    folder, new or resumed from its checkpoint."""
    env, device = init_from_env(cfg.device)
    note = console.print if env.is_main else (lambda _: None)
    accel = resolve_accel(cfg.amp, cfg.channels_last, device, note)
    accel.prepare(model.to(device))
    target.to(device)
    if cfg.compile:
        maybe_compile(model, device, note, cfg.compile_mode)
    if env.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    dataset = dataset.with_validation(cfg.val_fraction, cfg.seed)
    counts = train_class_counts(dataset)
    groups = shot_groups(counts)[0] if counts is not None and is_imbalanced(counts) else None
    if cfg.select == "best-val-balanced-acc" and groups is None:
        raise KdtoolError(f"--select best-val-balanced-acc needs training data known to be imbalanced (largest / "
                          f"smallest class count ≥ {IMBALANCE_FROM}); not this run's: use best-val-acc")  # fmt: skip
    train_loader, test_loader = make_loaders(dataset, cfg, device, env, teacher_cache, note)
    val_loader = None
    if dataset.validation is not None:
        val_loader = evaluation_loader(dataset, "validation", cfg.eval_batch_size, device, cfg, note)
    trainer = Trainer(model, target, train_loader, test_loader, cfg, env, val_loader, accel, groups)
    selector = ModelSelector(cfg.select, cfg.early_stopping)
    if resume:
        run, rows = _resumed(RunDir(cfg.out), device, trainer, selector)
        note(f"resuming {run.path} after epoch {len(rows)} of {cfg.epochs} (its checkpoint)")
    else:
        run, rows = _new_run(cfg, force, env, dataset, device, record), []
    barrier(env)
    shown = console if env.is_main else Console(quiet=True)
    return _Fitting(cfg, env, dataset, counts, model, target, trainer, selector, run, rows, note, shown)


def _resumed(
    run: RunDir, device: torch.device, trainer: Trainer, selector: ModelSelector
) -> tuple[RunDir, list[dict[str, float]]]:
    """``run`` and its epochs so far, with ``trainer``, the random generators and ``selector`` as its checkpoint
    left them."""
    state = load_checkpoint(run.path, device)
    trainer.load_state_dict(state["trainer"])
    set_rng_state(state["rng"])
    selector.load_state_dict(state["selection"])
    return run, list(state["rows"])


def _new_run(
    cfg: TrainConfig, force: bool, env: DistEnv, dataset: Dataset, device: torch.device, record: dict[str, Any] | None
) -> RunDir:
    """The run folder ``cfg.out``, created by rank 0 with its config.json and the dataset's vocabulary."""
    if not env.is_main:
        return RunDir(cfg.out)
    run = RunDir.create(cfg.out, force)
    if dataset.info.kind == "image":  # what the network reads: the dataset's batches or, adapted, its own
        record = {**(record or {}), "model_input": model_input(cfg, dataset.info).to_record()}
    facts = {**(record or {}), "dataset_info": dataset_record(dataset), "device_used": str(device),
             "world_size": env.world_size}  # fmt: skip
    run.write_config(cfg.kind, cfg.to_dict(), facts)
    vocabulary = dataset_vocabulary(dataset)
    if vocabulary is not None:
        vocabulary.save(run.path / VOCAB)
    return run


def _open_trackers(fitting: _Fitting) -> Trackers:
    """The ``--log`` trackers, on rank 0 (a resumed run's logged run continues at its next epoch); none elsewhere."""
    if not fitting.env.is_main:
        return Trackers(fitting.note)
    info = RunInfo(fitting.run.path, fitting.cfg.kind, fitting.cfg.to_dict(), len(fitting.rows))
    return Trackers.open(parse_log(fitting.cfg.log), info, fitting.note)


def _loop(fitting: _Fitting, trackers: Trackers, title: str) -> None:
    """``fit``'s epochs, from the first not yet done to the last or to early stopping, under the live display;
    an epoch that raises ends the trackers' run as failed."""
    cfg, run, rows = fitting.cfg, fitting.run, fitting.rows
    batches = len(fitting.trainer.train_loader)
    title = f"{title} · {_schedule_line(cfg)}" + _counts_line(cfg, fitting.counts)
    long_tail = fitting.trainer.shot_groups is not None
    # a resumed run shows the epochs it trains now; those of its checkpoint were shown when they were trained
    with EpochDisplay(fitting.shown, title, cfg.epochs, batches, len(rows), long_tail) as display:
        try:
            for row in fitting.trainer.epochs(display.step, start_epoch=len(rows)):
                _epoch_done(fitting, trackers, row)
                display.epoch_done(row)
                warning = rising_loss_warning(rows, cfg.epochs)
                if warning:
                    fitting.shown.print(warning)
                if fitting.selector.should_stop():
                    fitting.shown.print(f"early stopping: no lower validation loss for {cfg.early_stopping} epochs")
                    break
        except KeyboardInterrupt:
            trackers.finish(run.path, completed=False)
            raise RunInterrupted(run.path, len(rows)) from None
        except RunDiverged as exc:  # checkpoint and metrics.csv of the last finite epoch stay as they are
            trackers.finish(run.path, completed=False)
            if fitting.env.is_main:
                run.update_config({"status": "diverged", "diverged": exc.record})
            raise RunDiverged(divergence_line(exc.record, run.path), exc.record) from None
        except BaseException:
            trackers.finish(run.path, completed=False)
            raise


def _epoch_done(fitting: _Fitting, trackers: Trackers, row: dict[str, float]) -> None:
    """An epoch's metrics row to the selection and, on rank 0, to metrics.csv, the checkpoint and the trackers."""
    run, rows = fitting.run, fitting.rows
    rows.append(row)
    fitting.selector.update(row, _weights(fitting.model, fitting.target))
    if not fitting.env.is_main:
        return
    run.write_metrics(rows)
    save_checkpoint(run.path, fitting.trainer.state_dict(), len(rows), rows, fitting.selector.state_dict())
    # logged after the checkpoint: a resumed run never logs an epoch twice
    trackers.log_scalars({k: v for k, v in row.items() if k != "epoch"}, len(rows))
    if len(rows) % Q_IMAGE_EVERY == 0:
        _log_q(trackers, _run_q(fitting), f"after epoch {len(rows)}", len(rows))


def _finalize(fitting: _Fitting, trackers: Trackers) -> None:
    """``fit``'s end: the ranks' agreement checked, the selected epoch's weights kept, and on rank 0 the final
    metrics.csv, config.json facts, model and Q written and the trackers' run ended as completed."""
    env, run, rows, selector = fitting.env, fitting.run, fitting.rows, fitting.selector
    if env.enabled:  # DDP keeps the network in sync; check the method's own parameters (Q) are too
        target = fitting.target
        divergence = max_divergence([*fitting.model.parameters(), *target.parameters(), *target.buffers()], env)
        fitting.shown.print(f"{env.world_size} processes; largest parameter difference from rank 0: {divergence:.3g}")
    if selector.best_state is not None:  # keep the selected epoch's weights, not the last ones
        _load_weights(fitting.model, fitting.target, selector.best_state)
    for row in rows:
        row["selected"] = int(row["epoch"] == selector.selected_epoch)
    if env.is_main:
        run.write_metrics(rows)
        run.update_config({"selected_epoch": selector.selected_epoch, "epochs_run": len(rows)})
        run.save_model(unwrap_model(fitting.model))
        q = _run_q(fitting)
        if q is not None:
            q.save(run.path / Q)
            _log_q(trackers, q, f"kept (epoch {selector.selected_epoch})", len(rows))
        trackers.finish(run.path, completed=True)
    barrier(env)


# The first epochs over which a rising training loss is worth a warning (a run this long or longer)
RISING_LOSS_EPOCHS = 3


def rising_loss_warning(rows: list[dict[str, float]], epochs: int) -> str | None:
    """A one-line warning once the run's first epochs (:data:`RISING_LOSS_EPOCHS`, or all of a shorter run but one
    epoch) are done, if the training loss ended them higher than after the first: the settings fight the data
    (``--kd-loss dist`` at the CIFAR-100 setting on Fashion-MNIST: 56.9 → 64.3 → 63.8, then chance accuracy)."""
    first = min(RISING_LOSS_EPOCHS, epochs)
    if first < 2 or len(rows) != first or not rows[-1]["train_loss"] > rows[0]["train_loss"]:
        return None
    path = " → ".join(f"{row['train_loss']:.4g}" for row in rows)
    return (f"warning: the training loss rose over the first {first} epochs ({path}): this run's settings "
            f"(--lr, the loss's weights and temperature in the header) may not suit the data")  # fmt: skip


def report_run(console: Console, path: Path, rows: list[dict[str, float]]) -> None:
    """The closing lines of every training run (the CLI's and ``kdtool.fit``'s): the test metrics of the epoch
    whose weights were kept, and where the run folder and its Q are."""
    kept = selected_row(rows)
    epoch = f"epoch {int(kept['epoch'])} of {len(rows)}" + (" (selected)" if kept is not rows[-1] else "")
    console.print(
        f"{epoch}: test accuracy {kept['test_acc']:.2%}  macro-F1 {kept['test_macro_f1']:.4f}  "
        f"NLL {kept['test_nll']:.4f}  ECE {kept['test_ece']:.4f}  -> run folder {path}",
        soft_wrap=True,
    )
    if (Path(path) / Q).is_file():
        console.print(f"Q written to {Path(path) / Q}", soft_wrap=True)


def _run_q(fitting: _Fitting) -> QMatrix | None:
    """The Q the run's method learned, as it is now (None for a method without one)."""
    q, info = fitting.target.learned_q(), fitting.dataset.info
    if q is None:
        return None
    return QMatrix(q, list(info.class_names), fitting.cfg.alpha, info.name, source=fitting.target.name,
                   extra={"run": str(fitting.run.path)})  # fmt: skip


def _log_q(trackers: Trackers, q: QMatrix | None, when: str, step: int) -> None:
    """The Q heatmap to the trackers (where the Q has one: not beyond the heatmap's class limit)."""
    if q is not None and q.num_classes <= HEATMAP_MAX_CLASSES:
        trackers.log_image("q_heatmap", lambda: q_heatmap_png(q, f"softmax(Q) {when} · {q.dataset}"), step)


def _weights(model: nn.Module, target: Target) -> dict[str, Any]:
    return {"model": unwrap_model(model).state_dict(), "target": target.state_dict()}


def _load_weights(model: nn.Module, target: Target, state: dict[str, Any]) -> None:
    unwrap_model(model).load_state_dict(state["model"])
    target.load_state_dict(state["target"])


def train_teacher(
    cfg: TrainConfig, force: bool, console: Console, resume: bool = False
) -> tuple[RunDir, list[dict[str, float]]]:
    """``kdtool train-teacher``: validate everything first, then train and write the run folder."""
    cfg.resolve()
    plan_run(cfg.out, cfg.result_options(), force, resume, defaults=cfg.result_defaults())
    with stops_safely(cfg.out):
        path = choose_data_path(cfg, resume)
        dataset = training_split(load_data(cfg, stream=path is not None and path.used == "stream"), cfg)
        _report_skipped(dataset, console)
        seed_everything(cfg.seed)
        info = dataset.info
        model = init_model(cfg, dataset, console)
        target = build_method(cfg, info.num_classes, train_class_counts(dataset))
        title = f"{cfg.smoothing} · {cfg.model} · {info.name} ({len(dataset.train)} train / {len(dataset.test)} test)"
        if cfg.smoothing == "lls":  # what --q-update chose (auto: by the number of classes)
            title += f" · Q updates {'sparse' if target.row_sparse else 'dense'} (--q-update {cfg.q_update}, " \
                     f"K = {info.num_classes})"  # fmt: skip
        title, record = _with_data_path(title, _source_files(cfg), path)
        return fit(cfg, dataset, model, target, force, console, record, title, resume)


def _counts_line(cfg: TrainConfig, counts: list[int] | None) -> str:
    """The header's training counts where the split is imbalanced or made so: ``· train 12,000: 6,000 … 60 per
    class, ρ = 100; many/medium/few: <rule>``."""
    if counts is None or not (cfg.imbalance_ratio is not None or is_imbalanced(counts)):
        return ""
    line = f" · train {sum(counts):,}: {max(counts):,} … {min(counts):,} per class"
    line += "" if cfg.imbalance_ratio is None else f", ρ = {cfg.imbalance_ratio:g}"
    return line + (f"; many/medium/few: {shot_groups(counts)[1]}" if is_imbalanced(counts) else "")


def _schedule_line(cfg: TrainConfig) -> str:
    """The resolved options that default by dataset family, as the header line shows them."""
    line = f"lr {cfg.lr:g}, {cfg.schedule}, warm-up {cfg.warmup_epochs} epoch{'s' if cfg.warmup_epochs != 1 else ''}"
    return line + (f", augment {cfg.augment}" if cfg.applies_to_run("augment") else "")


def _with_data_path(title: str, record: dict[str, Any], path: LoaderChoice | None) -> tuple[str, dict[str, Any]]:
    """The header line and config.json facts, with the data path and why it was chosen."""
    if path is None:
        return title, record
    return f"{title} · data: {path.used} ({path.reason})", {**record, "data_loader": path.to_record()}


def _report_skipped(dataset: Dataset, console: Console) -> None:
    """Incomplete samples or truncated shards found while listing wds: shards (with --skip-bad-samples)."""
    for name in ("train", "test"):
        split = getattr(dataset, name)
        skipped = getattr(split, "skipped", [])
        if skipped and is_main_process():
            console.print(f"skipped {len(skipped)} incomplete sample{'s' if len(skipped) > 1 else ''} or truncated "
                          f"shard{'s' if len(skipped) > 1 else ''} of the {name} shards (--skip-bad-samples); the "
                          f"first: {skipped[0].describe()}", soft_wrap=True)  # fmt: skip


def _source_files(cfg: TrainConfig) -> dict[str, Any]:
    """What a run's config.json records of the files its network and method read: their SHA-256 (``rerun``
    checks it)."""
    sources: dict[str, Any] = {}
    if cfg.pretrained not in (None, HUB):
        sources["pretrained_weights"] = {"path": cfg.pretrained, "sha256": sha256_file(cfg.pretrained)}
    if cfg.smoothing == "prior":
        sources["prior_artifact"] = {"path": cfg.prior, "sha256": sha256_file(cfg.prior)}
    if cfg.smoothing == "tfkd-self":
        sources["teacher_run"] = {"path": cfg.teacher, "model_sha256": sha256_file(Path(cfg.teacher) / MODEL)}
    return sources


def distill(
    cfg: DistillConfig, force: bool, console: Console, resume: bool = False
) -> tuple[RunDir, list[dict[str, float]]]:
    """``kdtool distill``: a student from a teacher run or its teacher cache (KD, DKD, DIST, WTTM, NKD) or from a Q
    artifact alone (LLS-ST).

    Options, teacher, cache or Q, class names and the output folder are all checked before the run folder
    is created. Data: optional class subset (relabelled in the given order), then a stratified
    sample fraction of the training split, then ``--limit-train/--limit-test``. An LLS-ST run saves
    the Q it used (sliced to the class subset) as ``q.safetensors``.
    """
    cfg.resolve()
    plan_run(cfg.out, cfg.result_options(), force, resume, defaults=cfg.result_defaults())
    with stops_safely(cfg.out):
        # a text student reads its teacher's token ids, so it takes the teacher's vocabulary
        vocabulary = run_vocabulary(RunDir.open(cfg.teacher)) if cfg.teacher is not None else None
        path = choose_data_path(cfg, resume)
        streamed = path is not None and path.used == "stream"
        full = load_full_data(cfg, vocabulary, streamed)
        _report_skipped(full, console)
        kept = None
        if cfg.classes is not None or cfg.class_indices is not None:
            kept = resolve_classes(full.info.class_names, cfg.classes, cfg.class_indices)
        dataset = training_split(select_data(full, cfg, kept, cfg.sample_fraction), cfg)
        cache = None if cfg.teacher_cache is None else checked_teacher_cache(cfg, full, dataset, streamed)
        counts = train_class_counts(dataset)
        method, record = distillation_target(cfg, full.info, kept, cache, counts)
        target = with_class_weights(method, cfg, counts)
        record.update(_source_files(cfg))
        if kept is not None:
            record["kept_classes"] = kept
        seed_everything(cfg.seed)  # after the teacher is built: the student's initialisation depends on the seed only
        info = dataset.info
        model = init_model(cfg, dataset, console)
        title = f"{target.name} · {cfg.model} · {info.name} ({len(dataset.train)} train / {len(dataset.test)} test)"
        title += f" · {cfg.loss_line()}"
        if cache is not None:
            title += " · teacher: cache, " + record["teacher_cache_file"]["replay"]
        title, record = _with_data_path(title, record, path)
        run, rows = fit(cfg, dataset, model, target, force, console, record=record, title=title, resume=resume,
                        teacher_cache=cache)  # fmt: skip
        if isinstance(method, SubstituteTeacher) and is_main_process():
            method.q.save(run.path / Q)
        return run, rows


def checked_teacher_cache(cfg: DistillConfig, full: Dataset, dataset: Dataset, streamed: bool = False) -> TeacherCache:
    """``--teacher-cache``, opened (loaded whole where it fits ``--memory-budget``, else read per batch) and
    checked against the run's data: the dataset ``full`` (its name, classes, and its training samples under
    ``--limit-train`` with their labels where listed), the data options and path (``streamed``), and every
    training sample of ``dataset`` (the student's selection of ``full``) among the cached ones."""
    _, device = init_from_env(cfg.device)
    budget = parse_bytes(cfg.memory_budget) if cfg.memory_budget is not None else default_budget(device)[0]
    cache = TeacherCache.open(cfg.teacher_cache, budget)
    cache.check_exact(cfg.kd_loss, cfg.approximate_cache)
    text = full.info.kind == "text"
    options = data_options(cfg.dataset, cfg.image_size, cfg.augment, cfg.limit_train, cfg.seed, text,
                           "stream" if streamed else "memory")  # fmt: skip
    limited = full.limited(cfg.limit_train, None, cfg.seed).train
    cache.check_matches(options, full.info.name, list(full.info.class_names), len(limited))
    if not is_wds(cfg.dataset):  # shards keep their labels inside: their batches are checked as they come
        cache.check_labels(cache.rows_of(limited.sample_ids()), limited.labels)
    cache.rows_of(dataset.train.sample_ids())
    return cache
