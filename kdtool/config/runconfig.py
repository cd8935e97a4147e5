"""The resolved options of a run; ``config.json`` records those that apply to it, plus provenance.

Every option says when it applies (:data:`APPLIES`): an option given explicitly that the run
cannot use is refused (:meth:`TrainConfig.check_given`), and ``config.json`` records only the
options that apply (:meth:`TrainConfig.to_dict`), so two runs are the same run exactly when their
recorded options are equal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from kdtool.config.options import (
    DISTILL,
    KD_LOSSES,
    TRAIN,
    Applies,
    applies_of,
    config_options,
    is_text,
    option_fields,
    taught,
)
from kdtool.data.augment import parse_augment
from kdtool.data.registry import stored_image_size
from kdtool.data.shards import default_image_size, is_wds, resolve_val_shards
from kdtool.data.stream import LOADERS, default_workers, parse_bytes
from kdtool.data.text import has_official_validation, is_text_dataset, resolve_text_options
from kdtool.distributed import check_device
from kdtool.errors import KdtoolError, unknown_choice
from kdtool.losses.dist import check_dist_options
from kdtool.losses.dkd import check_dkd_options
from kdtool.losses.focal import parse_focal_gamma
from kdtool.losses.kd import check_kd_options
from kdtool.losses.lls import LLS_CORRECTIONS, Q_UPDATES, parse_lls_terms
from kdtool.losses.longtail import check_long_tail_options
from kdtool.losses.nkd import check_nkd_options
from kdtool.losses.simple import check_unit_interval
from kdtool.losses.tfkd import check_tfkd_options
from kdtool.losses.wttm import check_wttm_options
from kdtool.losses.zipf import check_zipf_options
from kdtool.models.registry import check_model_name
from kdtool.models.zoo import HUB, is_zoo_name, zoo_data_config
from kdtool.q.matrix import QMatrix
from kdtool.runs.folder import RECORD_FACTS, q_artifact_path
from kdtool.trackers import check_installed, parse_log

SCHEDULES = ("multistep", "cosine", "constant")
# --smoothing of train-teacher; kdtool.workflows.methods builds each (a test keeps the two lists equal)
SMOOTHING_METHODS = ("onehot", "ls", "lls", "ols", "tfkd-reg", "tfkd-self", "zipf", "focal", "prior", "logit-adjust",
                     "label-aware")  # fmt: skip
# --input-norm: normalise a zoo model's inputs by its own (pretrained) statistics or by the dataset's
INPUT_NORMS = ("model", "dataset")
# --select: which epoch's weights a run keeps (kdtool.training.selection)
SELECT_CHOICES = ("last", "best-val-loss", "best-val-acc", "best-val-f1", "best-val-balanced-acc")
# --amp: mixed precision (kdtool.training.accel)
AMP_MODES = ("none", "bf16", "fp16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


def check_amp(mode: str) -> str:
    """The canonical ``--amp`` value, or a KdtoolError naming the choices."""
    value = mode.strip().lower()
    if value not in AMP_MODES:
        raise unknown_choice("--amp", mode, AMP_MODES)
    return value


# option -> when it applies (kdtool.config.options); an option not listed applies to every run.
APPLIES: dict[str, Applies] = applies_of((TRAIN,))


@dataclass(frozen=True)
class TrainingDefaults:
    """The defaults of the options whose best value depends on the data (docs/training.md, "Training defaults")."""

    family: str
    augment: str
    schedule: str
    lr: float


# Chosen on validation splits, never on a test set; the evidence is in docs/training.md's table and its recipes.
# recipes/fmnist_defaults_search.sh: no crop and a cosine schedule beat crop and multistep by 2-3 points of
# validation accuracy (1-hot and LLS, 10 epochs); lr 0.05 is within 0.1 point of 0.1 on the full data and
# keeps a margin from 0.2, where 3-epoch runs on 5,000 images collapsed (and KD students at 0.1 did)
SMALL_GRAYSCALE = TrainingDefaults("small grayscale", "none", "cosine", 0.05)
SMALL_GRAYSCALE_SETS = ("fashion-mnist", "mnist")
# crop and flip are the standard for photographs; cosine as for the small images (not measured here)
NATURAL_IMAGES = TrainingDefaults("natural images", "standard", "cosine", 0.1)
TEXT = TrainingDefaults("text", "none", "cosine", 0.1)  # text has no augmentation
FAMILY_DEFAULTS = (SMALL_GRAYSCALE, NATURAL_IMAGES, TEXT)


def training_defaults(dataset: str) -> TrainingDefaults:
    """The augmentation, schedule and learning rate a run on ``dataset`` gets when it does not choose them."""
    if is_text_dataset(dataset):
        return TEXT
    return SMALL_GRAYSCALE if dataset in SMALL_GRAYSCALE_SETS else NATURAL_IMAGES


@dataclass
@option_fields
class TrainConfig:
    """Every option that shapes a run. Its fields are made from the option table, :data:`~kdtool.config.options.OPTIONS`
    (:func:`~kdtool.config.options.option_fields`): one per option of :attr:`commands`, with the name, type and
    default of the option's entry, in the table's order (``config.json``'s). :meth:`resolve` fills the defaults
    left to a rule (None) and checks every value. Defaults follow the LLS paper where it states one.
    """

    kind: ClassVar[str] = "train-teacher"
    commands: ClassVar[tuple[str, ...]] = (TRAIN,)  # whose options (kdtool.config.options) it holds
    applies: ClassVar[Mapping[str, Applies]] = APPLIES

    def resolve(self) -> TrainConfig:
        """Validate every option and fill the derived defaults, step by step; returns ``self``."""
        self.check_method()
        self.resolve_family_defaults()
        check_model_name(self.model)
        self.resolve_model_input()
        self.check_training()
        self.resolve_method_options()
        self.augment = ",".join(parse_augment(self.augment)) or "none"
        self.resolve_data_path()
        resolve_text_options(self)
        self.resolve_runtime()
        self.resolve_selection()
        self.resolve_schedule()
        return self

    def resolve_family_defaults(self) -> None:
        """The augmentation, schedule and learning rate of the dataset's family, and its image size, where the run
        leaves them."""
        defaults = training_defaults(self.dataset)
        if self.augment is None:
            self.augment = defaults.augment
        if self.schedule is None:
            self.schedule = defaults.schedule
        if self.lr is None:
            self.lr = defaults.lr
        if self.image_size is None:
            self.image_size = default_image_size(self.dataset)

    def check_training(self) -> None:
        """The sizes and rates of the optimisation."""
        if self.epochs <= 0:
            raise KdtoolError(f"--epochs must be positive, got {self.epochs}")
        if self.batch_size <= 0:
            raise KdtoolError(f"--batch-size must be positive, got {self.batch_size}")
        if self.lr <= 0:
            raise KdtoolError(f"--lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise KdtoolError(f"--weight-decay must be ≥ 0, got {self.weight_decay}")
        if self.imbalance_ratio is not None and not self.imbalance_ratio > 1:
            raise KdtoolError(f"--imbalance-ratio is the largest over the smallest class count: give a number > 1, "
                              f"got {self.imbalance_ratio:g}")  # fmt: skip
        if self.mixup_alpha <= 0:
            raise KdtoolError(f"--mixup-alpha must be > 0 (λ ~ Beta(α, α)), got {self.mixup_alpha}")

    def resolve_method_options(self) -> None:
        """The options of the training methods (LS, LLS, TF-KD, Zipf, focal, prior) and the files they read."""
        check_unit_interval("--epsilon", self.epsilon)
        if self.alpha is not None:  # None: an LLS-ST run whose α comes from its Q artifact
            check_unit_interval("--alpha", self.alpha)
        self.lls_terms = ",".join(parse_lls_terms(self.lls_terms))
        if self.q_update not in Q_UPDATES:
            raise unknown_choice("--q-update", self.q_update, Q_UPDATES)
        if self.q_weight_decay is None:
            self.q_weight_decay = self.weight_decay
        check_tfkd_options(self.tfkd_temperature, self.tfkd_weight, self.tfkd_multiplier, self.tfkd_correct_prob)
        check_zipf_options(self.zipf_weight, self.zipf_exponent)
        self.focal_gamma = str(parse_focal_gamma(self.focal_gamma))
        if self.lls_correction not in LLS_CORRECTIONS:
            raise unknown_choice("--lls-correction", self.lls_correction, LLS_CORRECTIONS)
        check_long_tail_options(self.tau, self.class_weights, self.cb_beta)
        if self.smoothing == "tfkd-self" and self.teacher is None:
            raise KdtoolError("--smoothing tfkd-self needs --teacher RUN, a trained run of the same network")
        if self.smoothing == "prior" and self.prior is None:
            raise KdtoolError("--smoothing prior needs --prior FILE, a Q artifact (see kdtool make-prior)")
        if self.prior is not None:
            self.prior = str(q_artifact_path(self.prior))

    def resolve_runtime(self) -> None:
        """Mixed precision, the device and the trackers: an unavailable --device, or a tracker whose package is
        missing, fails here, before any folder or data."""
        self.amp = check_amp(self.amp)
        if self.compile_mode not in COMPILE_MODES:
            raise unknown_choice("--compile-mode", self.compile_mode, COMPILE_MODES)
        check_device(self.device)
        trackers = parse_log(self.log)
        check_installed(trackers)
        self.log = ",".join(trackers)

    def resolve_selection(self) -> None:
        """The validation split, the epoch whose weights are kept, and early stopping."""
        if not 0.0 <= self.val_fraction < 1.0:
            raise KdtoolError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        has_val = self.val_fraction > 0 or has_official_validation(self.dataset)
        if self.select is None:
            self.select = "best-val-loss" if has_val else "last"
        if self.select not in SELECT_CHOICES:
            raise unknown_choice("--select", self.select, SELECT_CHOICES)
        if self.select != "last" and not has_val:
            raise KdtoolError(f"--select {self.select} needs a validation split: add --val-fraction (e.g. 0.1)")
        if self.early_stopping < 0 or (self.early_stopping and not has_val):
            raise KdtoolError("--early-stopping N needs N ≥ 1 and a validation split (--val-fraction)")

    def resolve_schedule(self) -> None:
        """The LR schedule, its warm-up and its milestones."""
        if self.schedule not in SCHEDULES:
            raise unknown_choice("--schedule", self.schedule, SCHEDULES)
        if self.warmup_epochs is None:
            # The paper warms up for 5 of 200 epochs; shorter runs get a tenth of their length, and at
            # least one epoch: short runs on small data diverged without it (docs/training.md, "Training defaults").
            # Never more than half the run: a 1-epoch run would otherwise never train at its --lr.
            self.warmup_epochs = min(max(1, min(5, self.epochs // 10)), self.epochs / 2)
        if float(self.warmup_epochs).is_integer():
            self.warmup_epochs = int(self.warmup_epochs)  # config.json and the header say 2, not 2.0
        if not self.warmup_epochs >= 0:  # NaN too
            raise KdtoolError(f"--warmup-epochs must be ≥ 0, got {self.warmup_epochs}")
        if self.warmup_epochs > self.epochs / 2:
            raise KdtoolError(f"--warmup-epochs {self.warmup_epochs} is more than half of the run's {self.epochs} "
                              f"epoch{'s' if self.epochs > 1 else ''}: most of the run would train below --lr; give "
                              f"at most {self.epochs / 2:g}")  # fmt: skip
        if not self.milestones:
            # As in the paper's 200-epoch schedules (100, 150): decay at 50% and 75% of training.
            self.milestones = sorted({max(1, self.epochs // 2), max(1, (3 * self.epochs) // 4)})
        if any(m <= 0 for m in self.milestones):
            raise KdtoolError(f"--milestones must be positive epochs, got {self.milestones}")

    def resolve_data_path(self) -> None:
        """``--loader`` and the streaming options; a wds: dataset's evaluation shards."""
        if self.loader not in LOADERS:
            raise unknown_choice("--loader", self.loader, LOADERS)
        if is_wds(self.dataset):
            if self.loader == "memory":
                raise KdtoolError("wds: shards are always streamed: --loader memory does not apply (use auto)")
            self.val_shards = resolve_val_shards(self.dataset, self.val_shards)
        elif self.loader == "stream" and not self.dataset.startswith("imagefolder:") and not is_text(self):
            raise KdtoolError(f"--loader stream reads imagefolder:PATH and wds: datasets; {self.dataset} is "
                              f"decoded into memory (remove --loader)")  # fmt: skip
        if self.memory_budget is not None:
            parse_bytes(self.memory_budget)
        if self.workers is not None and self.workers < 0:
            raise KdtoolError(f"--workers must be ≥ 0 (0: decode in the training process), got {self.workers}")
        if self.workers is None and is_wds(self.dataset):
            # wds: shards are dealt out to the workers, so their number shapes the batches: record the one used
            self.workers = default_workers()

    def starts_from_weights(self) -> bool:
        """Whether the network starts from trained weights (whose data config then is its default input)."""
        return self.pretrained is not None

    def resolve_model_input(self) -> None:
        """A zoo model's ``--pretrained`` file, input size and normalisation: by default its weights' own data
        config when it starts from weights, else the dataset's (a network trained from scratch has none)."""
        if not is_zoo_name(self.model):
            return
        if is_text(self):
            raise KdtoolError(f"model {self.model!r} reads images but {self.dataset} is text")
        if self.pretrained is not None and self.pretrained != HUB:
            path = Path(self.pretrained).expanduser()
            if not path.is_file():
                raise KdtoolError(f"--pretrained {self.pretrained}: no such file (give a weights file, or "
                                  f"--pretrained {HUB} for the zoo's download)")  # fmt: skip
            self.pretrained = str(path)
        if self.input_norm is None:
            self.input_norm = "model" if self.starts_from_weights() else "dataset"
        if self.input_norm not in INPUT_NORMS:
            raise unknown_choice("--input-norm", self.input_norm, INPUT_NORMS)
        if self.input_size is None:
            own = self.starts_from_weights()
            data_size = stored_image_size(self.dataset, self.image_size)
            self.input_size = zoo_data_config(self.model).size if own else data_size
        if self.input_size <= 0:
            raise KdtoolError(f"--input-size must be a positive number of pixels, got {self.input_size}")

    def check_method(self) -> None:
        if self.smoothing not in SMOOTHING_METHODS:
            raise unknown_choice("smoothing method", self.smoothing, SMOOTHING_METHODS)

    def applies_to_run(self, name: str) -> bool:
        """Whether the option ``name`` is used by this run (every option not in :data:`APPLIES` is)."""
        rule = self.applies.get(name)
        return rule is None or bool(rule.when(self))

    def check_given(self, given: Mapping[str, str]) -> None:
        """Refuse options the user typed (``name -> flag as typed``) that this run does not use."""
        for name, flag in given.items():
            rule = self.applies.get(name)
            if rule is not None and not rule.when(self):
                deciding = ", ".join(map(self.describe_option, rule.decided_by.split(",")))
                raise KdtoolError(f"{flag} does not apply to this run ({deciding}): it is used by {rule.users()} "
                                  f"only; remove it")  # fmt: skip

    def describe_option(self, name: str) -> str:
        """An option and its value as the user would type it, e.g. ``--schedule cosine`` (``no --data-root``)."""
        option = config_options(self.commands).get(name)  # its flag (a student's model is its --student)
        flag = option.flag if option is not None else "--" + name.replace("_", "-")
        value = getattr(self, name)
        return f"no {flag}" if value is None else f"{flag} {value}"

    def to_dict(self) -> dict[str, Any]:
        """The options that apply to this run, in declaration order (what ``config.json`` records)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if self.applies_to_run(f.name)}

    def result_options(self) -> dict[str, Any]:
        """The options of :meth:`to_dict` that make the run's result (not ``--device``, ``--out``, the trackers
        ...: kdtool.config.options): what ``--resume``, ``--seeds`` and ``sweep`` compare with a run folder's."""
        options = config_options(self.commands)
        return {k: v for k, v in self.to_dict().items() if k not in options or options[k].changes(self)}

    def result_defaults(self) -> dict[str, Any]:
        """The declared default of each option of :meth:`result_options` (None where a rule fills it): what a
        run recorded by a kdtool that did not have the option yet stands for."""
        options = config_options(self.commands)
        return {k: options[k].default for k in self.result_options() if k in options}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """A config from option values; an unknown name is an error (a renamed option must not vanish)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = [k for k in values if k not in known]
        if unknown:
            raise KdtoolError(f"unknown {cls.kind} option {unknown[0]!r}")
        return cls(**values)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TrainConfig:
        """The config of a run from its ``config.json`` (facts and provenance set aside)."""
        options = {k: v for k, v in record.items() if k not in RECORD_FACTS}
        try:
            return cls.from_dict(options)
        except KdtoolError as exc:
            raise KdtoolError(f"config.json of a {record.get('kind', cls.kind)} run: {exc}") from None


# --kd-balance: how a teacher's logits are corrected for the class prior before softening
KD_BALANCES = ("none", "logit-adjust")
# The options of each student method, as its header line shows them; β is the cross-entropy's weight.
LOSS_OPTIONS = {
    "kd": ("beta", "kd_weight", "temperature"),
    "dkd": ("beta", "temperature", "dkd_alpha", "dkd_beta", "dkd_warmup_epochs"),
    "dist": ("beta", "temperature", "dist_beta", "dist_gamma"),
    "wttm": ("beta", "wttm_gamma", "wttm_weight"),
    "nkd": ("beta", "temperature", "nkd_gamma"),
    "lls-st": ("alpha", "beta", "temperature"),
}
# The defaults of each method's options: settings that train kdtool's default student (LeNet-5 on Fashion-MNIST),
# chosen on a validation hold-out (docs/distill.md, "Defaults"); the papers' settings are the --kd-preset's.
# KD keeps the LLS paper's β = 0, T = 1; its weight w defaults to 1 − β (None here).
LOSS_DEFAULTS: dict[str, dict[str, Any]] = {
    "kd": {"beta": 0.0, "kd_weight": None, "temperature": 1.0},
    "dkd": {"beta": 1.0, "temperature": 1.0, "dkd_alpha": 1.0, "dkd_beta": 2.0, "dkd_warmup_epochs": 1},
    "dist": {"beta": 1.0, "temperature": 1.0, "dist_beta": 1.0, "dist_gamma": 1.0},
    "wttm": {"beta": 1.0, "wttm_gamma": 0.5, "wttm_weight": 1.0},
    "nkd": {"beta": 1.0, "temperature": 1.0, "nkd_gamma": 0.5},
    "lls-st": {"beta": 0.0, "temperature": 1.0},
}
# With --logit-standardize the temperature is a base temperature on z-scored logits: 2, as Sun et al. (CVPR 2024)
STANDARDIZED_TEMPERATURE = 2.0


@dataclass(frozen=True)
class KdPreset:
    """A paper's setting of one ``--kd-loss``: the option values it fills, and where they come from."""

    kd_loss: str
    values: Mapping[str, Any]
    source: str


# --kd-preset: each value from the authors' published config (docs/distill.md, "Presets", names file and commit).
KD_PRESETS: dict[str, KdPreset] = {
    "dkd-cifar100": KdPreset("dkd", {"beta": 1.0, "temperature": 4.0, "dkd_alpha": 1.0, "dkd_beta": 8.0,
                                     "dkd_warmup_epochs": 20, "logit_standardize": False},
                             "mdistiller configs/cifar100/dkd/*.yaml and engine/cfg.py"),
    # The authors' ImageNet config, not the paper's α 0.5: the config is what produced the published numbers.
    "dkd-imagenet": KdPreset("dkd", {"beta": 1.0, "temperature": 1.0, "dkd_alpha": 1.0, "dkd_beta": 0.5,
                                     "dkd_warmup_epochs": 1, "logit_standardize": False},
                             "mdistiller configs/imagenet/r34_r18/dkd.yaml"),
    "dist-cifar100": KdPreset("dist", {"beta": 1.0, "temperature": 4.0, "dist_beta": 2.0, "dist_gamma": 2.0,
                                       "logit_standardize": False},
                              "image_classification_sota configs/strategies/distill/dist_cifar.yaml"),
    "dist-imagenet": KdPreset("dist", {"beta": 1.0, "temperature": 1.0, "dist_beta": 2.0, "dist_gamma": 2.0,
                                       "logit_standardize": False},
                              "image_classification_sota configs/strategies/distill/resnet_dist.yaml"),
    "kd+ls": KdPreset("kd", {"beta": 0.1, "kd_weight": 9.0, "temperature": 2.0, "logit_standardize": True},
                      "logit-standardization-KD README.md, tools/train.py, mdistiller/engine/cfg.py"),
    "dkd+ls": KdPreset("dkd", {"beta": 1.0, "temperature": 2.0, "dkd_alpha": 9.0, "dkd_beta": 72.0,
                               "dkd_warmup_epochs": 20, "logit_standardize": True},
                       "logit-standardization-KD README.md, tools/train.py, mdistiller/engine/cfg.py"),
    "wttm-cifar100": KdPreset("wttm", {"beta": 1.0, "wttm_gamma": 0.2, "wttm_weight": 4.0,
                                       "logit_standardize": False}, "TTM README.md"),
    "nkd-cifar100": KdPreset("nkd", {"beta": 1.0, "temperature": 3.0, "nkd_gamma": 3.5, "logit_standardize": False},
                             "cls_KD configs/distillers/cifar100/res34_distill_res18_cifar.py"),
    "nkd-imagenet": KdPreset("nkd", {"beta": 1.0, "temperature": 1.0, "nkd_gamma": 1.5, "logit_standardize": False},
                             "cls_KD configs/distillers/imagenet/res34_distill_res18_img.py"),
}  # fmt: skip
# How the header line names each option
_SYMBOLS = {"beta": "CE weight β", "kd_weight": "KD weight", "temperature": "T", "dkd_alpha": "α", "dkd_beta": "β_dkd",
            "dkd_warmup_epochs": "warm-up", "dist_beta": "β_dist", "dist_gamma": "γ", "wttm_gamma": "γ",
            "wttm_weight": "weight", "nkd_gamma": "γ", "alpha": "α"}  # fmt: skip


@dataclass
@option_fields
class DistillConfig(TrainConfig):
    """A student run: the shared options plus where the knowledge comes from and which data it sees (the fields of
    the table's train-teacher and distill options, those of distill replacing train-teacher's of their name).

    The student architecture is ``model``; ``smoothing`` records the method: the ``kd_loss`` (one of
    :data:`KD_LOSSES`) of a student taught by a teacher, ``lls-st`` for one taught by a Q artifact. The
    method's options left unset (None) are filled by ``kd_preset`` (:data:`KD_PRESETS`), then by
    :data:`LOSS_DEFAULTS`.
    """

    kind: ClassVar[str] = "distill"
    commands: ClassVar[tuple[str, ...]] = (TRAIN, DISTILL)
    applies: ClassVar[Mapping[str, Applies]] = applies_of(commands)

    smoothing: str = "kd"  # not a distill option: the method the student learns by, set by resolve()

    def check_method(self) -> None:
        """A student's method follows from its source (see :meth:`resolve`)."""

    def describe_option(self, name: str) -> str:
        if name == "smoothing":  # a student's method is chosen by its source
            sources = (("--substitute-q", self.substitute_q), ("--teacher-cache", self.teacher_cache))
            return "distill " + next((flag for flag, value in sources if value is not None), "--teacher")
        if name == "kd_loss" and not taught(self):
            return "distill --substitute-q"
        return super().describe_option(name)

    def resolve(self) -> DistillConfig:
        """Validate the distillation options, then the shared ones; returns ``self``.

        LLS-ST's α defaults to the one its Q artifact records, read here so that the resolved
        options (compared by ``--resume``, ``--seeds`` and ``sweep``) hold the value the run uses;
        ``beta`` and ``temperature`` default per method.
        """
        self.resolve_source()
        self.resolve_loss_options()
        super().resolve()
        return self

    def resolve_source(self) -> None:
        """Exactly one source of knowledge, the options only it takes, and the kept classes."""
        if sum(source is not None for source in (self.teacher, self.teacher_cache, self.substitute_q)) != 1:
            raise KdtoolError("give exactly one of --teacher RUN (KD), --teacher-cache FILE (KD from a teacher "
                              "cache) or --substitute-q FILE (LLS-ST)")  # fmt: skip
        if taught(self) and self.alpha is not None:
            raise KdtoolError("--alpha is the LLS-ST mixing weight: it applies to --substitute-q only")
        if self.classes is not None and self.class_indices is not None:
            raise KdtoolError("give the kept classes by name (--classes) or by index (--class-indices), not both")
        if self.substitute_q is not None:
            self.substitute_q = str(q_artifact_path(self.substitute_q))  # a run folder stands for its Q
            if self.alpha is None:
                self.alpha = QMatrix.stored_alpha(self.substitute_q)  # the whole artifact is read once, by the run

    def resolve_loss_options(self) -> None:
        """The method and its options: ``--kd-preset``'s values where not given, then the method's defaults."""
        preset = self.preset()
        if self.kd_loss is None:
            self.kd_loss = "kd" if preset is None else preset.kd_loss
        if self.kd_loss not in KD_LOSSES:
            raise unknown_choice("--kd-loss", self.kd_loss, KD_LOSSES)
        if preset is not None and taught(self):
            self.apply_preset(preset)
        self.smoothing = self.kd_loss if taught(self) else "lls-st"
        defaults = dict(LOSS_DEFAULTS[self.smoothing])
        if self.logit_standardize and "temperature" in defaults:
            defaults["temperature"] = STANDARDIZED_TEMPERATURE
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.smoothing == "kd" and self.kd_weight is None:
            self.kd_weight = 1.0 - self.beta
        self.check_loss_options()

    def apply_preset(self, preset: KdPreset) -> None:
        """``preset``'s values where the run leaves them (its logit standardisation always); a preset of another
        --kd-loss than the one given is an error."""
        if preset.kd_loss != self.kd_loss:
            fitting = ", ".join(n for n, p in KD_PRESETS.items() if p.kd_loss == self.kd_loss)
            raise KdtoolError(f"--kd-preset {self.kd_preset} sets --kd-loss {preset.kd_loss}, not "
                              f"{self.kd_loss}: remove --kd-loss or choose a {self.kd_loss} preset "
                              f"({fitting})")  # fmt: skip
        for name, value in preset.values.items():
            if getattr(self, name) is None or (name == "logit_standardize" and value):
                setattr(self, name, value)

    def check_loss_options(self) -> None:
        """The resolved weights and temperature of the method's loss, each in its range, and the teacher's balance."""
        if self.kd_balance not in KD_BALANCES:
            raise unknown_choice("--kd-balance", self.kd_balance, KD_BALANCES)
        check_kd_options(self.beta, 1.0 if self.temperature is None else self.temperature, self.kd_weight)
        checks = {"dkd": lambda: check_dkd_options(self.dkd_alpha, self.dkd_beta, self.dkd_warmup_epochs),
                  "dist": lambda: check_dist_options(self.dist_beta, self.dist_gamma),
                  "wttm": lambda: check_wttm_options(self.wttm_gamma, self.wttm_weight),
                  "nkd": lambda: check_nkd_options(self.nkd_gamma)}  # fmt: skip
        if self.smoothing in checks:
            checks[self.smoothing]()

    def preset(self) -> KdPreset | None:
        """The ``--kd-preset`` (None without one); an unknown name is a KdtoolError naming the choices."""
        if self.kd_preset is None:
            return None
        if self.kd_preset not in KD_PRESETS:
            raise unknown_choice("--kd-preset", self.kd_preset, list(KD_PRESETS))
        return KD_PRESETS[self.kd_preset]

    def preset_record(self) -> dict[str, Any]:
        """For ``config.json``: every value the preset set, and the options given that override it."""
        preset = self.preset()
        if preset is None or not taught(self):
            return {}
        overridden = {k: getattr(self, k) for k, v in preset.values.items() if getattr(self, k) != v}
        return {
            "kd_preset_set": {k: v for k, v in preset.values.items() if k not in overridden},
            "kd_preset_overridden": overridden,
        }

    def loss_line(self) -> str:
        """The method's resolved options for the header line, e.g. ``T 1, CE weight β 1, β_dist 1, γ 1``, with
        the preset and what overrides it."""
        names = [n for n in LOSS_OPTIONS[self.smoothing] if self.applies_to_run(n) or n == "alpha"]
        line = ", ".join(f"{_SYMBOLS[n]} {getattr(self, n):g}" for n in names)
        if self.logit_standardize and taught(self):
            line += ", logits standardised"
        record = self.preset_record()
        if record:
            line += f" (--kd-preset {self.kd_preset}"
            for name, value in record["kd_preset_overridden"].items():
                flag, its = "--" + name.replace("_", "-"), KD_PRESETS[self.kd_preset].values[name]
                given = flag if isinstance(value, bool) else f"{flag} {value:g}"
                line += f"; {given} overrides its {its if isinstance(its, bool) else format(its, 'g')}"
            line += ")"
        return line


# The options an imported network's run has (kdtool import): its data, network, input and weights file.
IMPORT_OPTIONS = ("dataset", "model", "smoothing", "out", "data_root", "download", "image_size", "limit_test",
                  "input_size", "input_norm", "weights", "seed", "device", "eval_batch_size")  # fmt: skip


@dataclass
class ImportConfig(TrainConfig):
    """A network trained elsewhere (``kdtool import``): ``weights`` of ``model``, evaluated on ``dataset``.

    It starts from its weights, so a zoo model reads its own data config by default; no training option
    applies (``smoothing`` is ``import``, the method column of ``compare``).
    """

    kind: ClassVar[str] = "import"

    smoothing: str = "import"
    weights: str = ""

    def check_method(self) -> None:
        """An imported network has no training method."""

    def starts_from_weights(self) -> bool:
        return True

    def resolve(self) -> ImportConfig:
        """Validate the data, model, input and weights file; returns ``self``."""
        if is_text(self):
            raise KdtoolError("kdtool import takes image networks: text models need the vocabulary they were "
                              "trained with")  # fmt: skip
        path = Path(self.weights).expanduser()
        if not path.is_file():
            raise KdtoolError(f"--weights {self.weights}: no such file")
        self.weights = str(path)
        super().resolve()
        return self


_TRAINED = Applies("kind", lambda c: False, "training commands (train-teacher, distill)")
ImportConfig.applies = {**APPLIES, **{f.name: _TRAINED for f in dataclasses.fields(ImportConfig)
                                      if f.name not in IMPORT_OPTIONS}}  # fmt: skip


def config_of_record(record: Mapping[str, Any]) -> TrainConfig:
    """The config of a run from its ``config.json``, as the command that wrote it built it."""
    if record.get("kind") == "import":
        return ImportConfig.from_record(record)
    distilled = record.get("kind") == "distill" or record.get("smoothing") in (*KD_LOSSES, "lls-st")
    return (DistillConfig if distilled else TrainConfig).from_record(record)
