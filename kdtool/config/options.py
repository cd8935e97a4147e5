"""The options of the training commands, declared once: :data:`OPTIONS`.

One :class:`Option` per option gives its name (the config field and ``config.json`` key), the type the command
line parses, its default (None: a rule of :meth:`~kdtool.config.runconfig.TrainConfig.resolve` fills it, which its
help states), its help text and panel, the commands that take it, when it applies to a run (:class:`Applies`; an
option given to a run that cannot use it is refused) and whether it changes the run's result. The ``train-teacher``
and ``distill`` signatures (kdtool.cli.options), the configs' ``applies`` rules, ``kdtool.fit``'s keywords and
``rerun --set`` are read from it, and :func:`option_fields` makes the configs' fields of it (name, type, default).
Adding an option is one entry here plus its use.

Nothing here imports torch (``--help`` stays fast): the rules that look at a dataset or a model import their
helpers when they are evaluated.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kdtool.errors import KdtoolError, close_names

TRAIN, DISTILL = "train-teacher", "distill"
BOTH = (TRAIN, DISTILL)
# panels of --help
DATA, OPTIM, METHOD, RUN, STREAM, TEXT = "Data", "Optimisation", "Method", "Run", "Data bigger than memory", "Text"
ZOO, SPEED, TRACKING = "Zoo models (timm:, torchvision:)", "Speed", "Tracking"
SOURCE, KD = "Distillation", "Distillation loss"
FAMILY = " Default: by dataset family (docs/training.md, 'Training defaults'): "
MODEL_NAMES = ("lenet5, alexnet, resnet18, resnet34, resnet50, mobilenet_v2; text: bilstm, textcnn; any timm:NAME "
               "or torchvision:NAME (kdtool models lists them).")  # fmt: skip


def parse_int_list(value: str, flag: str) -> list[int]:
    """``"100,150"`` -> ``[100, 150]``; anything else (an empty item too: ``0,,1``) is a one-line error naming
    the flag; a value of commas and spaces alone is no integers."""
    items = value.split(",") if value.strip(", ") else []
    try:
        return [int(v) for v in items]
    except ValueError:
        raise KdtoolError(f"{flag} takes comma-separated integers, got {value!r}") from None


def int_list(flag: str) -> Callable[[str], list[int]]:
    """The parser of ``flag``'s comma list of integers (:func:`parse_int_list`)."""

    def parse(value: str) -> list[int]:
        return parse_int_list(value, flag)

    return parse


def _name_list(value: str) -> list[str]:
    from kdtool.q.subsets import parse_name_list

    return parse_name_list(value)


# --kd-loss of a student taught by a teacher; kdtool.distill.teachers builds each (a test keeps the two lists equal)
KD_LOSSES = ("kd", "dkd", "dist", "wttm", "nkd")


@dataclass(frozen=True)
class Applies:
    """When an option applies: ``when(config)``, decided by the options ``decided_by`` (a comma list: the error
    names each one's value); ``used_by`` in words (a function for words only known once the data helpers are
    imported)."""

    decided_by: str
    when: Callable[[Any], bool]
    used_by: str | Callable[[], str]

    def users(self) -> str:
        """The runs that use the option, in words (``--smoothing lls``, ``text datasets ...``)."""
        return self.used_by if isinstance(self.used_by, str) else self.used_by()


def _budgeted(c: Any) -> bool:
    """Whether ``--memory-budget`` decides something: the data path of ``--loader auto`` imagefolder data, or how a
    student's teacher cache is read."""
    auto = c.dataset.startswith("imagefolder:") and c.loader == "auto"
    return auto or getattr(c, "teacher_cache", None) is not None


def _uses_tau(c: Any) -> bool:
    """Whether a run subtracts or adds τ·log π somewhere: logit adjustment, an LLS prior correction, a balanced KD."""
    from kdtool.losses.lls import TAU_CORRECTIONS

    return (c.smoothing == "logit-adjust" or (c.smoothing == "lls" and c.lls_correction in TAU_CORRECTIONS)
            or getattr(c, "kd_balance", "none") != "none")  # fmt: skip


def method(*names: str) -> Applies:
    """Applies to runs of these ``--smoothing`` methods."""
    return Applies("smoothing", lambda c: c.smoothing in names, "--smoothing " + " and ".join(names))


def kd_loss(*names: str) -> Applies:
    """Applies to students taught by a teacher's logits with these ``--kd-loss``."""
    return Applies("kd_loss", lambda c: taught(c) and c.kd_loss in names, "--kd-loss " + " and ".join(names))


def logs_to(tracker: str) -> Applies:
    """Applies to runs that log to ``tracker``."""
    return Applies("log", lambda c: tracker in _trackers(c), f"--log {tracker}")


def taught(c: Any) -> bool:
    """A student taught by a teacher's logits (``--teacher`` or ``--teacher-cache``), not by a Q artifact."""
    return c.substitute_q is None


def _trackers(c: Any) -> tuple[str, ...]:
    from kdtool.trackers import parse_log

    return parse_log(c.log)


def is_text(c: Any) -> bool:
    """Whether the run's data are text."""
    from kdtool.data.text import is_text_dataset

    return is_text_dataset(c.dataset)


def _is_wds(c: Any) -> bool:
    from kdtool.data.shards import is_wds

    return is_wds(c.dataset)


def _torchvision_sets() -> tuple[str, ...]:
    from kdtool.data.vision import TORCHVISION_SETS

    return tuple(TORCHVISION_SETS)


def _may_stream(c: Any) -> bool:
    """Whether the run can take the streaming data path (imagefolder: unless --loader memory; wds: always)."""
    return _is_wds(c) or (c.dataset.startswith("imagefolder:") and c.loader != "memory")


def _mixes(c: Any) -> bool:
    from kdtool.data.augment import MIXERS, parse_augment

    return bool(set(parse_augment(c.augment or "")) & set(MIXERS))


def _no_official_validation(c: Any) -> bool:
    from kdtool.data.text import has_official_validation

    return not has_official_validation(c.dataset)


def _zoo(c: Any) -> bool:
    from kdtool.models.zoo import is_zoo_name

    return is_zoo_name(c.model)


TEXT_DATA = Applies("dataset", is_text, "text datasets (goemotions, goemotions-ekman, text:PATH)")
TORCHVISION = Applies("dataset", lambda c: c.dataset in _torchvision_sets(),
                      lambda: "the torchvision datasets (" + ", ".join(_torchvision_sets()) + ")")  # fmt: skip
SHARDS = Applies("dataset", _is_wds, "wds: datasets")
FILES = Applies("dataset", lambda c: c.dataset.startswith(("imagefolder:", "wds:")),
                "imagefolder:PATH and wds: datasets")  # fmt: skip
STREAMS = Applies("loader", _may_stream, "--loader stream or auto with imagefolder:PATH, and wds: datasets")
MULTISTEP = Applies("schedule", lambda c: c.schedule == "multistep", "--schedule multistep")
ZOO_MODELS = Applies("model", _zoo, "timm: and torchvision: models")
LLS_ST = Applies("smoothing", lambda c: not taught(c), "--substitute-q (LLS-ST)")


@dataclass(frozen=True)
class Option:
    """One option of the training commands (see the module's docstring)."""

    name: str  # the config field and config.json key; the parameter and kdtool.fit keyword
    type: Any  # what the command line parses (a path option is recorded as text)
    default: Any
    help: str
    panel: str
    commands: tuple[str, ...] = BOTH  # () for a config field no command line sets (kdtool.fit and rerun --set do)
    applies: Applies | None = None  # None: every run of its commands uses it
    # False (or False for the run, a function of its config): a run and its continuation may differ in it
    # (--resume, --seeds and sweep compare the others with the run folder's; compare groups runs across it)
    changes_result: bool | Callable[[Any], bool] = True
    flags: tuple[str, ...] = ()  # the flag(s) when not --name (a bool's are --name, or --name/--no-name)
    parse: Callable[[Any], Any] | None = None  # the command line's value -> the config's (its return type annotated)
    config: bool = True  # False: a control of the command itself (--seeds, --force, ...), no config field
    show_default: bool = True
    metavar: str | None = None

    def changes(self, config: Any) -> bool:
        """Whether a run of ``config`` with another value of this option is another run."""
        return self.changes_result(config) if callable(self.changes_result) else self.changes_result

    @property
    def flag(self) -> str:
        """The flag as a person types it (``--lls-terms``, ``--student``)."""
        return self.flags[0].split("/")[0] if self.flags else "--" + self.name.replace("_", "-")

    @property
    def optional(self) -> bool:
        """Whether None (the option not given) is one of its values."""
        return isinstance(self.type, types.UnionType) and type(None) in typing.get_args(self.type)

    @property
    def kind(self) -> Any:
        """The command line's type without None (``int`` of ``int | None``)."""
        kinds = typing.get_args(self.type) if isinstance(self.type, types.UnionType) else (self.type,)
        return next(k for k in kinds if k is not type(None))

    @property
    def held_type(self) -> Any:
        """The type of its config field: the command line's, with a path held as text and a parsed value typed as
        its parser returns it (``list[int] | None`` of ``--class-indices``)."""
        held = typing.get_type_hints(self.parse)["return"] if self.parse is not None else self.kind
        held = str if held is Path else held
        return held | None if self.optional else held

    def config_field(self) -> Any:
        """Its dataclass field in a config: the default as the config holds it (a fresh one per config where that
        is mutable, as the empty list of ``--milestones``)."""
        value = self.to_config(self.default)
        if type(value).__hash__ is None:  # one list shared by every config would be changed through any of them
            return dataclasses.field(default_factory=functools.partial(self.to_config, self.default))
        return dataclasses.field(default=value)

    def to_config(self, value: Any) -> Any:
        """The command line's parsed value as the config holds it (a path as text, a comma list as a list)."""
        if value is None:
            return None
        if self.parse is not None:
            return self.parse(value)
        return str(value) if isinstance(value, Path) else value


T, D = (TRAIN,), (DISTILL,)
# In the order of the commands' --help (distill lists its DISTILL_FIRST panels first).
OPTIONS: tuple[Option, ...] = (
    Option("out", Path, None, "Run folder to create.", RUN, changes_result=False),  # default: COMMAND_DEFAULTS
    Option("dataset", str, "fashion-mnist", "fashion-mnist (embedded), mnist, cifar10, cifar100, svhn, "
        "imagefolder:PATH, wds:PATTERN (tar shards); text: goemotions, goemotions-ekman (embedded), text:PATH.", DATA),
    Option("data_root", Path | None, None, "Folder of torchvision datasets.", DATA, applies=TORCHVISION),
    Option("download", bool, False, "Download torchvision datasets into --data-root.", DATA,
        applies=Applies("dataset,data_root", lambda c: c.data_root is not None and c.dataset in _torchvision_sets(),
                        "--data-root with a torchvision dataset")),
    Option("image_size", int | None, None, "Square size imagefolder images are resized to (default: 64; wds: the "
        "size its shards.json records, as kdtool shard writes it, else 64).", DATA, applies=FILES, show_default=False),
    Option("classes", str | None, None, 'Keep only these classes, by name, in this order: "a,b,c".', DATA, commands=D,
        parse=_name_list),
    Option("class_indices", str | None, None, "Keep only these classes, by index, in this order: 0,2,4.", DATA,
        commands=D, parse=int_list("--class-indices")),
    Option("sample_fraction", float, 1.0, "Train on this fraction of each class, in (0,1] (seeded; test set "
        "unchanged).", DATA, commands=D),
    Option("limit_train", int | None, None, "Use at most N training samples (seeded).", DATA),
    Option("limit_test", int | None, None, "Use at most N test samples (seeded).", DATA),
    Option("imbalance_ratio", float | None, None, "Long-tailed training split (CIFAR-LT profile): class i of K keeps "
        "⌊n_max·ρ^(−i/(K−1))⌋ samples (seeded); validation hold-out drawn first, test split unchanged. Not for wds:.",
        DATA, metavar="ρ", show_default=False, applies=Applies("dataset", lambda c: not _is_wds(c),
                                                               "datasets whose labels are known up front (not wds: "
                                                               "shards)")),
    Option("augment", str | None, None, "'standard' (random crop, and flip where it fits the data), 'none', or a "
        "comma list of cutout, mixup, cutmix, randaugment added to the standard ones." + FAMILY + "none for "
        "fashion-mnist and mnist, standard for other images.", DATA,
        applies=Applies("dataset", lambda c: not is_text(c), "image datasets")),
    Option("no_augment", bool, False, "Same as --augment none.", DATA, config=False),
    Option("vocab_size", int, 20000, "Vocabulary entries (padding and unknown-word tokens included): the most "
        "frequent training tokens.", TEXT, applies=TEXT_DATA),
    Option("max_len", int, 128, "Tokens kept per text.", TEXT, applies=TEXT_DATA),
    Option("embed_dim", int, 128, "Embedding size of bilstm/textcnn.", TEXT, applies=TEXT_DATA),
    Option("hidden_size", int, 128, "bilstm: LSTM units per direction; textcnn: filters per width.", TEXT,
        applies=TEXT_DATA),
    Option("word_vectors", Path | None, None, "GloVe-format text file ('word v1 ... vd' a line) that initialises the "
        "embedding.", TEXT, applies=TEXT_DATA),
    Option("model", str, "lenet5", MODEL_NAMES, METHOD, commands=T),
    Option("model", str, "lenet5", "Student network: " + MODEL_NAMES, METHOD, commands=D, flags=("--student",)),
    Option("pretrained", str | None, None, "Start from pretrained weights: a safetensors or PyTorch state-dict file "
        "(head resized, first convolution adapted), or 'hub' for the zoo's own download.", ZOO, applies=ZOO_MODELS,
        metavar="FILE|hub", show_default=False),
    Option("input_size", int | None, None, "Square size the network reads; batches are resized on the device "
        "(default: the pretrained weights' own size, else the data's).", ZOO, applies=ZOO_MODELS, show_default=False),
    Option("input_norm", str | None, None, "Normalise inputs by the model's own mean/std or the dataset's: model or "
        "dataset (default: model when pretrained).", ZOO, applies=ZOO_MODELS, show_default=False),
    Option("smoothing", str, "lls", "Training method: onehot, ls, lls, ols, tfkd-reg, tfkd-self (--teacher), zipf, "
        "focal (--focal-gamma), prior (--prior); long-tailed data: logit-adjust (--tau) or label-aware (MiSLAS's "
        "per-class ε).", METHOD, commands=T),
    Option("epsilon", float, 0.1, "LS and prior: smoothing mass ε in (0,1).", METHOD, commands=T,
        applies=method("ls", "prior")),
    Option("alpha", float, 0.1, "LLS: mixing weight α in (0,1).", METHOD, commands=T, applies=method("lls")),
    Option("lls_terms", str, "all", "LLS: terms to keep, 'all' or a comma list of target-entropy, forward-ce, "
        "prediction-entropy, reverse-ce.", METHOD, commands=T, applies=method("lls")),
    Option("q_weight_decay", float | None, None, "LLS: weight decay of Q (default: --weight-decay).", METHOD,
        commands=T, applies=method("lls")),
    Option("q_update", str, "auto", "LLS: how Q is updated: dense (all K² entries every step), sparse (only the rows "
        "of the batch's labels, the others caught up exactly when read: the same training, per-step cost O(batch × "
        "K)) or auto (sparse from 1,000 classes).", METHOD, commands=T, applies=method("lls")),
    Option("lls_correction", str, "none", "LLS on imbalanced data: none, prior (target softmax(Q[y] − τ·log π)), "
        "adjusted (loss on softmax(z + τ·log π)) or alpha (α_y = α·n_y/n_max).", METHOD, commands=T,
        applies=method("lls")),
    Option("teacher", Path | None, None, "tfkd-self: run folder of a trained copy of the student.", METHOD, commands=T,
        applies=method("tfkd-self"), flags=("--teacher",)),
    Option("tfkd_temperature", float, 20.0, "TF-KD: temperature τ of teacher and student.", METHOD, commands=T,
        applies=method("tfkd-reg", "tfkd-self")),
    Option("tfkd_weight", float, 0.1, "TF-KD: weight α of the KD term in [0,1]; CE gets 1-α.", METHOD, commands=T,
        applies=method("tfkd-reg", "tfkd-self")),
    Option("tfkd_multiplier", float, 1.0, "TF-KD: extra factor m on the KD term (docs/methods.md: matching the "
        "reference code).", METHOD, commands=T, applies=method("tfkd-reg", "tfkd-self")),
    Option("tfkd_correct_prob", float, 0.9, "tfkd-reg: virtual teacher's probability a of the true class.", METHOD,
        commands=T, applies=method("tfkd-reg")),
    Option("zipf_weight", float, 1.0, "zipf: weight λ of KL(Zipf target ‖ prediction).", METHOD, commands=T,
        applies=method("zipf")),
    Option("zipf_exponent", float, 1.0, "zipf: exponent s, mass ∝ 1/rank^s.", METHOD, commands=T,
        applies=method("zipf")),
    Option("focal_gamma", str, "3", "focal: γ ≥ 0 (3 = FL-3), or 'adaptive' (FLSD-53: 5 if p_y < 0.2, else 3).",
        METHOD, commands=T, applies=method("focal")),
    Option("prior", Path | None, None, "prior: Q artifact of a fixed smoothing distribution θ (kdtool make-prior).",
        METHOD, commands=T, applies=method("prior")),
    Option("tau", float, 1.0, "τ of τ·log π (class prior of the training split): logit-adjust, --lls-correction "
        "prior/adjusted, --kd-balance.", METHOD, applies=Applies("smoothing", _uses_tau, "--smoothing logit-adjust, "
        "--lls-correction prior or adjusted, and distill --kd-balance logit-adjust")),
    Option("class_weights", str, "none", "Weight each sample by its class: none or effective (class-balanced, "
        "(1−β)/(1−β^n_y), summing to K; Cui et al. 2019).", METHOD,
        applies=Applies("kd_loss", lambda c: getattr(c, "kd_loss", None) != "dist" or not taught(c),
                        "every method but --kd-loss dist (whose inter-class term correlates the batch)")),
    Option("cb_beta", float, 0.9999, "--class-weights effective: β in (0,1).", METHOD,
        applies=Applies("class_weights", lambda c: c.class_weights == "effective", "--class-weights effective")),
    Option("teacher", Path | None, None, "Run folder of the teacher (Hinton KD).", SOURCE, commands=D,
        applies=Applies("smoothing", lambda c: c.teacher is not None, "--teacher")),
    Option("teacher_cache", Path | None, None, "Teacher cache (kdtool cache-teacher) replayed instead of running the "
        "teacher: KD losses only.", SOURCE, commands=D, show_default=False,
        applies=Applies("smoothing", lambda c: c.teacher_cache is not None, "--teacher-cache")),
    Option("approximate_cache", bool, False, "Accept a teacher cache of the top-k < K logits: every KD loss from it "
        "is an approximation of the live teacher's (the run's header and config.json say so).", SOURCE, commands=D,
        applies=Applies("teacher_cache", lambda c: c.teacher_cache is not None, "--teacher-cache")),
    Option("substitute_q", Path | None, None, "Q artifact used instead of a teacher (LLS-ST).", SOURCE, commands=D,
        applies=LLS_ST),
    Option("alpha", float | None, None, "LLS-ST: mixing weight α in (0,1) (default: the Q artifact's).", SOURCE,
        commands=D, applies=LLS_ST),
    Option("beta", float | None, None, "Weight β in [0,1] of the hard-label cross-entropy (default: 0 for kd and "
        "LLS-ST, 1 for the other losses).", SOURCE, commands=D, show_default=False),
    Option("temperature", float | None, None, "Softmax temperature T of teacher and student, soft term ×T² (default: "
        "1; 2 with --logit-standardize).", SOURCE, commands=D, show_default=False,
        applies=Applies("kd_loss", lambda c: not (taught(c) and c.kd_loss == "wttm"),
                        "--kd-loss kd, dkd, dist, nkd and --substitute-q (wttm's γ stands for 1/T)")),
    Option("kd_loss", str | None, None, "With a teacher or its cache: kd (Hinton), dkd (decoupled KD, Zhao et al. "
        "2022), dist (DIST, Huang et al. 2022), wttm (weighted transformed teacher matching, Zheng & Yang 2024) or "
        "nkd (normalized KD, Yang et al. 2023) (default: the --kd-preset's, else kd).", KD, commands=D,
        show_default=False, applies=Applies("smoothing", taught, "--teacher and --teacher-cache")),
    Option("kd_preset", str | None, None, "A paper's setting of its loss (sets --kd-loss and fills its weights, "
        "temperature and warm-up; an option given overrides it): dkd-cifar100, dkd-imagenet, dist-cifar100, "
        "dist-imagenet, kd+ls, dkd+ls, wttm-cifar100, nkd-cifar100, nkd-imagenet (docs/distill.md).", KD, commands=D,
        show_default=False, applies=Applies("smoothing", taught, "--teacher and --teacher-cache")),
    Option("logit_standardize", bool, False, "z-score student and teacher logits per sample before the distillation "
        "loss (Sun et al. 2024); the cross-entropy keeps the raw logits.", KD, commands=D,
        applies=kd_loss(*KD_LOSSES)),
    Option("kd_weight", float | None, None, "kd: weight w of the soft term (default: 1 − β).", KD, commands=D,
        show_default=False, applies=kd_loss("kd")),
    Option("dkd_alpha", float | None, None, "dkd: weight α of the target-class term TCKD (default: 1).", KD,
        commands=D, show_default=False, applies=kd_loss("dkd")),
    Option("dkd_beta", float | None, None, "dkd: weight β of the non-target term NCKD (default: 2; the paper tunes "
        "it per teacher, 1-8).", KD, commands=D, show_default=False, applies=kd_loss("dkd")),
    Option("dkd_warmup_epochs", int | None, None, "dkd: epochs over which the DKD term's weight rises linearly to 1 "
        "(default: 1).", KD, commands=D, show_default=False, applies=kd_loss("dkd")),
    Option("dist_beta", float | None, None, "dist: weight β of the inter-class (per sample) relation term (default: "
        "1).", KD, commands=D, show_default=False, applies=kd_loss("dist")),
    Option("dist_gamma", float | None, None, "dist: weight γ of the intra-class (per class) relation term (default: "
        "1).", KD, commands=D, show_default=False, applies=kd_loss("dist")),
    Option("wttm_gamma", float | None, None, "wttm: exponent γ of the teacher's power transform p_t^γ, γ = 1/T "
        "(default: 0.5).", KD, commands=D, show_default=False, applies=kd_loss("wttm")),
    Option("wttm_weight", float | None, None, "wttm: weight of the WTTM term (default: 1).", KD, commands=D,
        show_default=False, applies=kd_loss("wttm")),
    Option("nkd_gamma", float | None, None, "nkd: weight γ of the normalised non-target term (default: 0.5).", KD,
        commands=D, show_default=False, applies=kd_loss("nkd")),
    Option("kd_balance", str, "none", "With a teacher or its cache: none, or logit-adjust (teacher logits minus "
        "τ·log π of the training split before softening, for every --kd-loss).", KD, commands=D,
        applies=Applies("smoothing", taught, "--teacher and --teacher-cache")),
    Option("epochs", int, 10, "Training epochs.", OPTIM),
    Option("batch_size", int, 128, "Batch size.", OPTIM),
    Option("lr", float | None, None, "Peak learning rate (SGD, momentum 0.9)." + FAMILY + "0.05 for fashion-mnist "
        "and mnist, 0.1 otherwise.", OPTIM),
    Option("momentum", float, 0.9, "SGD momentum.", OPTIM, commands=()),
    Option("weight_decay", float, 5e-4, "Weight decay of the network.", OPTIM),
    Option("decay_bias_norm", bool, False, "Weight decay on biases and normalisation parameters too (default: off, as "
        "timm).", OPTIM, flags=("--decay-bias-norm/--no-decay-bias-norm",)),
    Option("mixup_alpha", float, 0.2, "mixup, cutmix: λ ~ Beta(α, α) (1: uniform; 0.2 was better on validation).",
        DATA, applies=Applies("augment", _mixes, "--augment with mixup or cutmix")),
    Option("schedule", str | None, None, "LR schedule after warm-up: multistep (at --milestones), cosine, or "
        "constant. Default: cosine (the paper recipes pass multistep).", OPTIM),
    Option("warmup_epochs", float | None, None, "Linear warm-up epochs, at most half the run (default: a tenth of the "
        "run, at least 1, at most 5, and 0.5 for a 1-epoch run).", OPTIM),
    Option("val_fraction", float, 0.0, "Hold out this stratified fraction of the training set for validation. "
        "Datasets with an official validation split (goemotions, goemotions-ekman, text:PATH with validation.tsv) "
        "always use it and refuse this option.", OPTIM,
        applies=Applies("dataset", _no_official_validation,
                        "datasets without an official validation split (one that has it always uses it)")),
    Option("select", str | None, None, "Weights to keep: last, best-val-loss, best-val-acc, best-val-f1 (macro-F1) "
        "or best-val-balanced-acc (imbalanced training data). Default: best-val-loss when there is a validation "
        "split (--val-fraction, or the dataset's official one), else last.", OPTIM),
    Option("early_stopping", int, 0, "Stop after N epochs without a lower validation loss (0: off).", OPTIM),
    Option("milestones", str, "", "Epochs where the LR is multiplied by --gamma, e.g. 100,150 (default: 50% and 75% "
        "of --epochs).", OPTIM, applies=MULTISTEP, parse=int_list("--milestones")),
    Option("gamma", float, 0.1, "LR decay factor at each milestone.", OPTIM, applies=MULTISTEP),
    Option("seed", int, 0, "Seed of initialisation, shuffling and augmentation.", RUN),
    Option("seeds", str | None, None, "Comma list of seeds: one run per seed in `OUT/seed<N>`, one after another "
        "(not with --seed). Re-running skips finished seeds and resumes an interrupted one.", RUN, config=False,
        show_default=False),
    Option("device", str, "auto", "auto (CUDA when present), cpu, cuda, cuda:1 ...", RUN, changes_result=False),
    Option("eval_batch_size", int, 1024, "Batch size of evaluation.", RUN, commands=(), changes_result=False),
    Option("amp", str, "none", "Mixed precision: none, bf16 (autocast; on a CPU without native bf16 it is slower) or "
        "fp16 (CUDA only, with a gradient scaler).", SPEED),
    Option("channels_last", bool, False, "Channels-last memory format for the network and its batches (faster "
        "convolutions on CPUs and on GPUs with AMP).", SPEED),
    Option("compile", bool, False, "torch.compile the network (minutes of compiling first; falls back to eager, "
        "saying why, where unavailable).", SPEED),
    Option("compile_mode", str, "default", "--compile: torch.compile's mode: default, reduce-overhead (CUDA graphs: "
        "no launch cost per kernel, for steps the host cannot keep up with) or max-autotune "
        "(longer compiling). docs/multi-gpu.md ('Speed') has what each measured.", SPEED,
        applies=Applies("compile", lambda c: c.compile, "--compile")),
    Option("log", str, "csv", "Experiment trackers, a comma list: csv (metrics.csv, always written), tensorboard "
        "(event files in OUT/tensorboard), mlflow, wandb (its files in OUT/wandb; WANDB_MODE=offline works without "
        'network). Each but csv is an optional extra: pip install "kdtool[NAME]". Under torchrun write `torchrun ... '
        "-m kdtool -- train-teacher --log ...`.", TRACKING, changes_result=False),
    Option("mlflow_uri", str | None, None, "--log mlflow: tracking store, a server URL or sqlite:///FILE (default: "
        "MLflow's, MLFLOW_TRACKING_URI if set).", TRACKING, applies=logs_to("mlflow"), changes_result=False,
        show_default=False),
    Option("mlflow_experiment", str, "kdtool", "--log mlflow: experiment name.", TRACKING, applies=logs_to("mlflow"),
        changes_result=False),
    Option("wandb_project", str, "kdtool", "--log wandb: project name.", TRACKING, applies=logs_to("wandb"),
        changes_result=False),
    Option("loader", str, "auto", "Data path of imagefolder: and wds: data: memory (decoded once into a tensor on the "
        "device), stream (decoded batch by batch in --workers processes) or auto (memory when the decoded data fit in "
        "--memory-budget).", STREAM, applies=FILES),
    # a resumed run keeps the data path it started with, whatever the budget
    # the budget also decides whether a student's teacher cache is loaded whole or read per batch
    Option("memory_budget", str | None, None, "--loader auto: the most decoded data kept in memory, e.g. 8GiB or "
        "500MB (default: half the available RAM, and on a GPU at most half its free memory); distill "
        "--teacher-cache: the largest cache loaded whole (a bigger one is read per batch).", STREAM,
        applies=Applies("dataset,loader", _budgeted, "--loader auto with imagefolder:PATH, and distill "
                        "--teacher-cache"), changes_result=False, show_default=False),
    # streamed imagefolder batches do not depend on it; wds: shards are dealt out to the workers, each making its
    # own batches, so there they do
    Option("workers", int | None, None, "Streaming: DataLoader worker processes per training process (0: decode in "
        "it; default: its share of the CPU cores, at most 16). Batches do not depend on it.", STREAM, applies=STREAMS,
        changes_result=_is_wds, show_default=False),
    Option("skip_bad_samples", bool, False, "Streaming: skip unreadable images, incomplete samples and truncated "
        "shards, counting them in the log, instead of stopping at the first.", STREAM, applies=STREAMS),
    Option("val_shards", str | None, None, "wds: evaluation shards, a brace pattern (default: the training pattern "
        "with 'val' for 'train', where those exist).", STREAM, applies=SHARDS, show_default=False),
    Option("class_names", Path | None, None, "wds: file of class names, one a line, in class-index order (default: "
        "classes.txt beside the training shards).", STREAM, applies=SHARDS, show_default=False),
    Option("force", bool, False, "Replace an existing run folder.", RUN, config=False),
    Option("resume", bool, False, "Continue the run in --out from its last complete epoch.", RUN, config=False),
)  # fmt: skip

# Defaults that differ between the commands.
COMMAND_DEFAULTS = {TRAIN: {"out": Path("runs/teacher")}, DISTILL: {"out": Path("runs/student")}}
# distill's --help starts with where the knowledge comes from and the student network
DISTILL_FIRST = (SOURCE, KD, METHOD, ZOO)


def _own_default(option: Option, command: str) -> Option:
    """``option`` with ``command``'s own default (:data:`COMMAND_DEFAULTS`)."""
    own = COMMAND_DEFAULTS.get(command, {})
    return dataclasses.replace(option, default=own[option.name]) if option.name in own else option


def command_options(command: str) -> list[Option]:
    """The options of ``command`` in the order of its ``--help``, each with the command's own default."""
    options = [o for o in OPTIONS if command in o.commands]
    if command == DISTILL:
        ranks = {panel: rank for rank, panel in enumerate(DISTILL_FIRST)}
        options.sort(key=lambda o: ranks.get(o.panel, len(ranks)))  # stable: the table's order within a rank
    return [_own_default(o, command) for o in options]


def config_options(commands: Iterable[str]) -> dict[str, Option]:
    """The config fields of runs of ``commands`` and the fields no command line sets, in the table's order, each
    with its command's own default; a later command's option replaces an earlier one of its name, in its place
    (as a dataclass subclass's field does its base's)."""
    chosen: dict[str, Option] = {}
    for command in commands:
        for option in OPTIONS:
            if option.config and (command in option.commands or not option.commands):
                chosen[option.name] = _own_default(option, command)
    return chosen


def option_fields(cls: type) -> type:
    """Class decorator, under ``@dataclass``: one field per option of ``cls.commands`` (:func:`config_options`),
    named, typed (:attr:`Option.held_type`) and defaulted (:meth:`Option.config_field`) by the table. A field the
    class declares itself (one no command line sets, or an option it defaults otherwise) is kept, after them."""
    own = inspect.get_annotations(cls)
    options = {name: o for name, o in config_options(cls.commands).items() if name not in own}
    for name, option in options.items():
        setattr(cls, name, option.config_field())
    cls.__annotations__ = {**{name: o.held_type for name, o in options.items()}, **own}
    return cls


def applies_of(commands: Iterable[str]) -> dict[str, Applies]:
    """Option name -> when it applies, for runs of ``commands``; an option not listed applies to every run."""
    return {name: o.applies for name, o in config_options(commands).items() if o.applies is not None}


# Options whose value may differ between runs of the same result (for wds: data --workers does change it)
RESULT_FREE = frozenset(o.name for o in OPTIONS if o.config and o.changes_result is not True)


def changes_result(name: str, record: Mapping[str, Any]) -> bool:
    """Whether option ``name`` changes the result of the run whose recorded options are ``record`` (a name not
    in the table, a fact about the run, does)."""
    option = next((o for o in OPTIONS if o.config and o.name == name), None)
    return option is None or option.changes(SimpleNamespace(**record))


def option_suggestion(name: str, known: Iterable[str]) -> str:
    """``"; did you mean alpha?"`` for a mistyped option ``name`` ("" when nothing in ``known`` is close)."""
    close = close_names(name, known, n=3)
    return f"; did you mean {', '.join(close)}?" if close else ""


def given_flags(names: Iterable[str], commands: Sequence[str], where: str) -> dict[str, str]:
    """``{name: flag}`` of options given by name (``kdtool.fit``'s keywords) to a run of ``commands``, for
    :meth:`~kdtool.config.runconfig.TrainConfig.check_given`. An unknown name is a one-line error, as the command
    line's: ``kdtool.fit: no train-teacher option 'alfa'; did you mean alpha?``."""
    known = config_options(commands)
    for name in names:
        if name not in known:
            raise KdtoolError(f"{where}: no {commands[-1]} option {name!r}{option_suggestion(name, known)}")
    return {name: known[name].flag for name in names}
