"""The resolved options of a run; ``config.json`` records those that apply to it, plus provenance.

Every option says when it applies (:data:`APPLIES`): an option given explicitly that the run
cannot use is refused (:meth:`TrainConfig.check_given`), and ``config.json`` records only the
options that apply (:meth:`TrainConfig.to_dict`), so two runs are the same run exactly when their
recorded options are equal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from kdtool.data.augment import MIXERS, parse_augment
from kdtool.data.registry import stored_image_size
from kdtool.data.shards import is_wds, resolve_val_shards
from kdtool.data.stream import LOADERS, default_workers, parse_bytes
from kdtool.data.text import has_official_validation, is_text_dataset, resolve_text_options
from kdtool.data.vision import TORCHVISION_SETS
from kdtool.distributed import check_device
from kdtool.errors import KdtoolError
from kdtool.losses.dist import check_dist_options
from kdtool.losses.dkd import check_dkd_options
from kdtool.losses.focal import parse_focal_gamma
from kdtool.losses.kd import check_kd_options
from kdtool.losses.lls import LLS_CORRECTIONS, Q_UPDATES, TAU_CORRECTIONS, parse_lls_terms
from kdtool.losses.longtail import check_long_tail_options
from kdtool.losses.simple import check_unit_interval
from kdtool.losses.tfkd import check_tfkd_options
from kdtool.losses.zipf import check_zipf_options
from kdtool.models.registry import check_model_name
from kdtool.models.zoo import HUB, is_zoo_name, zoo_data_config
from kdtool.q.matrix import QMatrix
from kdtool.runs.folder import q_artifact_path
from kdtool.trackers import check_installed, parse_log

SCHEDULES = ("multistep", "cosine", "constant")
# --smoothing of train-teacher; kdtool.workflows.methods builds each (a test keeps the two lists equal)
SMOOTHING_METHODS = ("onehot", "ls", "lls", "ols", "tfkd-reg", "tfkd-self", "zipf", "focal", "prior", "logit-adjust",
                     "label-aware")  # fmt: skip
# Keys of config.json that are facts about a run (its data, sources, results, provenance), not options.
RECORD_FACTS = frozenset({"kind", "versions", "command", "dataset_info", "device_used", "world_size",
                          "selected_epoch", "epochs_run", "teacher_run", "teacher_cache_file", "q_artifact",
                          "prior_artifact", "kept_classes", "model_input", "pretrained_weights",
                          "imported_weights", "data_loader", "status", "diverged", "redacted"})  # fmt: skip
# --input-norm: normalise a zoo model's inputs by its own (pretrained) statistics or by the dataset's
INPUT_NORMS = ("model", "dataset")
# --select: which epoch's weights a run keeps (kdtool.training.selection)
SELECT_CHOICES = ("last", "best-val-loss", "best-val-acc", "best-val-f1", "best-val-balanced-acc")
# --amp: mixed precision (kdtool.training.accel)
AMP_MODES = ("none", "bf16", "fp16")


def check_amp(mode: str) -> str:
    """The canonical ``--amp`` value, or a KdtoolError naming the choices."""
    value = mode.strip().lower()
    if value not in AMP_MODES:
        raise KdtoolError(f"unknown --amp {mode!r}: choose one of {', '.join(AMP_MODES)}")
    return value


@dataclass(frozen=True)
class Applies:
    """When an option applies: ``when(config)``, decided by the option ``decided_by``; ``used_by`` in words."""

    decided_by: str
    when: Callable[[Any], bool]
    used_by: str


def _method(*names: str) -> Applies:
    return Applies("smoothing", lambda c: c.smoothing in names, "--smoothing " + " and ".join(names))


def _is_text(c: Any) -> bool:
    return is_text_dataset(c.dataset)


_TEXT = Applies("dataset", _is_text, "text datasets (goemotions, goemotions-ekman, text:PATH)")
_TORCHVISION = Applies("dataset", lambda c: c.dataset in TORCHVISION_SETS,
                       "the torchvision datasets (" + ", ".join(TORCHVISION_SETS) + ")")  # fmt: skip
_SHARDS = Applies("dataset", lambda c: is_wds(c.dataset), "wds: datasets")
_FILES = Applies(
    "dataset", lambda c: c.dataset.startswith(("imagefolder:", "wds:")), "imagefolder:PATH and wds: datasets"
)


def _may_stream(c: Any) -> bool:
    """Whether the run can take the streaming data path (imagefolder: unless --loader memory; wds: always)."""
    return is_wds(c.dataset) or (c.dataset.startswith("imagefolder:") and c.loader != "memory")


_STREAMS = Applies("loader", _may_stream, "--loader stream or auto with imagefolder:PATH, and wds: datasets")
_MULTISTEP = Applies("schedule", lambda c: c.schedule == "multistep", "--schedule multistep")
_ZOO = Applies("model", lambda c: is_zoo_name(c.model), "timm: and torchvision: models")


def _uses_tau(c: Any) -> bool:
    """Whether a run subtracts or adds τ·log π somewhere: logit adjustment, an LLS prior correction, a balanced KD."""
    return (c.smoothing == "logit-adjust" or (c.smoothing == "lls" and c.lls_correction in TAU_CORRECTIONS)
            or getattr(c, "kd_balance", "none") != "none")  # fmt: skip


def _logs_to(tracker: str) -> Applies:
    return Applies("log", lambda c: tracker in parse_log(c.log), f"--log {tracker}")


# option -> when it applies; an option not listed applies to every run.
APPLIES: dict[str, Applies] = {
    "epsilon": _method("ls", "prior"),
    "alpha": _method("lls"),
    "lls_terms": _method("lls"),
    "q_weight_decay": _method("lls"),
    "q_update": _method("lls"),
    "teacher": _method("tfkd-self"),
    "tfkd_temperature": _method("tfkd-reg", "tfkd-self"),
    "tfkd_weight": _method("tfkd-reg", "tfkd-self"),
    "tfkd_multiplier": _method("tfkd-reg", "tfkd-self"),
    "tfkd_correct_prob": _method("tfkd-reg"),
    "zipf_weight": _method("zipf"),
    "zipf_exponent": _method("zipf"),
    "focal_gamma": _method("focal"),
    "prior": _method("prior"),
    "lls_correction": _method("lls"),
    "tau": Applies(
        "smoothing",
        _uses_tau,
        "--smoothing logit-adjust, --lls-correction prior or adjusted, and distill --kd-balance logit-adjust",
    ),
    "cb_beta": Applies("class_weights", lambda c: c.class_weights == "effective", "--class-weights effective"),
    "imbalance_ratio": Applies(
        "dataset", lambda c: not is_wds(c.dataset), "datasets whose labels are known up front (not wds: shards)"
    ),
    "milestones": _MULTISTEP,
    "gamma": _MULTISTEP,
    "data_root": _TORCHVISION,
    "download": Applies(
        "data_root",
        lambda c: c.data_root is not None and c.dataset in TORCHVISION_SETS,
        "--data-root with a torchvision dataset",
    ),
    "image_size": _FILES,
    "loader": _FILES,
    "memory_budget": Applies(
        "loader",
        lambda c: c.dataset.startswith("imagefolder:") and c.loader == "auto",
        "--loader auto with imagefolder:PATH",
    ),
    "workers": _STREAMS,
    "skip_bad_samples": _STREAMS,
    "val_shards": _SHARDS,
    "class_names": _SHARDS,
    "augment": Applies("dataset", lambda c: not _is_text(c), "image datasets"),
    "mixup_alpha": Applies(
        "augment", lambda c: bool(set(parse_augment(c.augment or "")) & set(MIXERS)), "--augment with mixup or cutmix"
    ),
    "pretrained": _ZOO,
    "input_size": _ZOO,
    "input_norm": _ZOO,
    "vocab_size": _TEXT,
    "max_len": _TEXT,
    "embed_dim": _TEXT,
    "hidden_size": _TEXT,
    "word_vectors": _TEXT,
    "val_fraction": Applies(
        "dataset",
        lambda c: not has_official_validation(c.dataset),
        "datasets without an official validation split (one that has it always uses it)",
    ),
    "mlflow_uri": _logs_to("mlflow"),
    "mlflow_experiment": _logs_to("mlflow"),
    "wandb_project": _logs_to("wandb"),
}


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
class TrainConfig:
    """Every option that shapes a run. Defaults follow the LLS paper where it states one."""

    kind: ClassVar[str] = "train-teacher"
    applies: ClassVar[Mapping[str, Applies]] = APPLIES

    dataset: str = "fashion-mnist"
    model: str = "lenet5"
    smoothing: str = "lls"
    out: str = "runs/run"
    data_root: str | None = None
    download: bool = False
    image_size: int = 64
    limit_train: int | None = None
    limit_test: int | None = None
    augment: str | None = None  # default: per dataset family (training_defaults)
    vocab_size: int = 20000  # text: vocabulary entries, <pad> and <unk> included
    max_len: int = 128  # text: tokens kept per text
    embed_dim: int = 128  # text models: embedding size
    hidden_size: int = 128  # text models: LSTM units per direction / CNN filters per width
    word_vectors: str | None = None  # text models: GloVe-format file initialising the embedding
    pretrained: str | None = None  # zoo models: weights file (or "hub") the network starts from
    input_size: int | None = None  # zoo models: square input size (default: the weights', else the data's)
    input_norm: str | None = None  # zoo models: "model" or "dataset" statistics (default: model when pretrained)
    epsilon: float = 0.1
    alpha: float | None = 0.1
    lls_terms: str = "all"
    q_weight_decay: float | None = None
    q_update: str = "auto"  # LLS: how Q is updated, dense, sparse (only the batch's rows) or auto (by K)
    teacher: str | None = None
    tfkd_temperature: float = 20.0
    tfkd_weight: float = 0.1
    tfkd_multiplier: float = 1.0
    tfkd_correct_prob: float = 0.9
    zipf_weight: float = 1.0
    zipf_exponent: float = 1.0
    focal_gamma: str = "3"
    prior: str | None = None
    lls_correction: str = "none"  # LLS on imbalanced data: none, prior, adjusted or alpha (kdtool.losses.lls)
    tau: float = 1.0  # logit adjustment: τ of τ·log π (Menon et al. ICLR 2021)
    class_weights: str = "none"  # none, or effective: class-balanced weights (Cui et al. CVPR 2019)
    cb_beta: float = 0.9999  # --class-weights effective: β of the effective number
    imbalance_ratio: float | None = None  # long-tailed training split (CIFAR-LT profile), n_max / n_min
    epochs: int = 10
    batch_size: int = 128
    lr: float | None = None  # default: per dataset family
    momentum: float = 0.9
    weight_decay: float = 5e-4
    decay_bias_norm: bool = False  # weight decay on biases and normalisation parameters too (timm's default: off)
    mixup_alpha: float = 0.2  # mixup/cutmix: λ ~ Beta(α, α); 0.2 beat 1 on validation (docs/training.md)
    schedule: str | None = None  # default: per dataset family
    warmup_epochs: float | None = None  # may be fractional: 0.5 is half an epoch
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 1024
    val_fraction: float = 0.0
    select: str | None = None
    early_stopping: int = 0
    amp: str = "none"  # mixed precision: none, bf16, fp16 (see kdtool.training.accel)
    channels_last: bool = False
    compile: bool = False
    log: str = "csv"  # experiment trackers (kdtool.trackers); metrics.csv is always written
    mlflow_uri: str | None = None  # MLflow tracking store (default: MLflow's own)
    mlflow_experiment: str = "kdtool"
    wandb_project: str = "kdtool"
    loader: str = "auto"  # data path: memory, stream (kdtool.data.stream) or auto (by --memory-budget)
    memory_budget: str | None = None  # --loader auto: the most decoded data kept in memory (default: a share of it)
    workers: int | None = None  # streaming: DataLoader worker processes (default: by CPU cores)
    skip_bad_samples: bool = False  # streaming: skip and count unreadable samples instead of stopping
    val_shards: str | None = None  # wds: evaluation shards (default: the training pattern with val for train)
    class_names: str | None = None  # wds: file of class names (default: classes.txt beside the shards)

    def resolve(self) -> TrainConfig:
        """Validate every option and fill the derived defaults; returns ``self``."""
        self.check_method()
        defaults = training_defaults(self.dataset)
        if self.augment is None:
            self.augment = defaults.augment
        if self.schedule is None:
            self.schedule = defaults.schedule
        if self.lr is None:
            self.lr = defaults.lr
        check_model_name(self.model)
        self.resolve_model_input()
        if self.epochs <= 0:
            raise KdtoolError(f"--epochs must be positive, got {self.epochs}")
        if self.batch_size <= 0:
            raise KdtoolError(f"--batch-size must be positive, got {self.batch_size}")
        if self.lr <= 0:
            raise KdtoolError(f"--lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise KdtoolError(f"--weight-decay must be ≥ 0, got {self.weight_decay}")
        if self.mixup_alpha <= 0:
            raise KdtoolError(f"--mixup-alpha must be > 0 (λ ~ Beta(α, α)), got {self.mixup_alpha}")
        check_unit_interval("--epsilon", self.epsilon)
        if self.alpha is not None:  # None: an LLS-ST run whose α comes from its Q artifact
            check_unit_interval("--alpha", self.alpha)
        self.lls_terms = ",".join(parse_lls_terms(self.lls_terms))
        if self.q_update not in Q_UPDATES:
            raise KdtoolError(f"unknown --q-update {self.q_update!r}: choose one of {', '.join(Q_UPDATES)}")
        self.augment = ",".join(parse_augment(self.augment)) or "none"
        self.resolve_data_path()
        resolve_text_options(self)
        check_tfkd_options(self.tfkd_temperature, self.tfkd_weight, self.tfkd_multiplier, self.tfkd_correct_prob)
        check_zipf_options(self.zipf_weight, self.zipf_exponent)
        self.focal_gamma = str(parse_focal_gamma(self.focal_gamma))
        if self.lls_correction not in LLS_CORRECTIONS:
            raise KdtoolError(f"unknown --lls-correction {self.lls_correction!r}: choose one of "
                              f"{', '.join(LLS_CORRECTIONS)}")  # fmt: skip
        check_long_tail_options(self.tau, self.class_weights, self.cb_beta)
        if self.imbalance_ratio is not None and not self.imbalance_ratio > 1:
            raise KdtoolError(f"--imbalance-ratio is the largest over the smallest class count: give a number > 1, "
                              f"got {self.imbalance_ratio:g}")  # fmt: skip
        self.amp = check_amp(self.amp)
        check_device(self.device)  # an unavailable --device fails here, before any folder or data
        trackers = parse_log(self.log)
        check_installed(trackers)  # a tracker's missing package fails here too
        self.log = ",".join(trackers)
        if self.smoothing == "tfkd-self" and self.teacher is None:
            raise KdtoolError("--smoothing tfkd-self needs --teacher RUN, a trained run of the same network")
        if self.smoothing == "prior" and self.prior is None:
            raise KdtoolError("--smoothing prior needs --prior FILE, a Q artifact (see kdtool make-prior)")
        if self.prior is not None:
            self.prior = str(q_artifact_path(self.prior))
        if self.q_weight_decay is None:
            self.q_weight_decay = self.weight_decay
        if not 0.0 <= self.val_fraction < 1.0:
            raise KdtoolError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        has_val = self.val_fraction > 0 or has_official_validation(self.dataset)
        if self.select is None:
            self.select = "best-val-loss" if has_val else "last"
        if self.select not in SELECT_CHOICES:
            raise KdtoolError(f"unknown --select {self.select!r}: choose one of {', '.join(SELECT_CHOICES)}")
        if self.select != "last" and not has_val:
            raise KdtoolError(f"--select {self.select} needs a validation split: add --val-fraction (e.g. 0.1)")
        if self.early_stopping < 0 or (self.early_stopping and not has_val):
            raise KdtoolError("--early-stopping N needs N ≥ 1 and a validation split (--val-fraction)")
        if self.schedule not in SCHEDULES:
            raise KdtoolError(f"unknown --schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}")
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
        return self

    def resolve_data_path(self) -> None:
        """``--loader`` and the streaming options; a wds: dataset's evaluation shards."""
        if self.loader not in LOADERS:
            raise KdtoolError(f"unknown --loader {self.loader!r}: choose one of {', '.join(LOADERS)}")
        if is_wds(self.dataset):
            if self.loader == "memory":
                raise KdtoolError("wds: shards are always streamed: --loader memory does not apply (use auto)")
            self.val_shards = resolve_val_shards(self.dataset, self.val_shards)
        elif self.loader == "stream" and not self.dataset.startswith("imagefolder:") and not _is_text(self):
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
        if _is_text(self):
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
            raise KdtoolError(f"unknown --input-norm {self.input_norm!r}: choose one of {', '.join(INPUT_NORMS)}")
        if self.input_size is None:
            own = self.starts_from_weights()
            data_size = stored_image_size(self.dataset, self.image_size)
            self.input_size = zoo_data_config(self.model).size if own else data_size
        if self.input_size <= 0:
            raise KdtoolError(f"--input-size must be a positive number of pixels, got {self.input_size}")

    def check_method(self) -> None:
        if self.smoothing not in SMOOTHING_METHODS:
            raise KdtoolError(f"unknown smoothing method {self.smoothing!r}: choose one of "
                              f"{', '.join(SMOOTHING_METHODS)}")  # fmt: skip

    def applies_to_run(self, name: str) -> bool:
        """Whether the option ``name`` is used by this run (every option not in :data:`APPLIES` is)."""
        rule = self.applies.get(name)
        return rule is None or bool(rule.when(self))

    def check_given(self, given: Mapping[str, str]) -> None:
        """Refuse options the user typed (``name -> flag as typed``) that this run does not use."""
        for name, flag in given.items():
            rule = self.applies.get(name)
            if rule is not None and not rule.when(self):
                raise KdtoolError(f"{flag} does not apply to this run ({self.describe_option(rule.decided_by)}): "
                                  f"it is used by {rule.used_by} only; remove it")  # fmt: skip

    def describe_option(self, name: str) -> str:
        """An option and its value as the user would type it, e.g. ``--schedule cosine`` (``no --data-root``)."""
        flag, value = "--" + name.replace("_", "-"), getattr(self, name)
        return f"no {flag}" if value is None else f"{flag} {value}"

    def to_dict(self) -> dict[str, Any]:
        """The options that apply to this run, in declaration order (what ``config.json`` records)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if self.applies_to_run(f.name)}

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


# --kd-loss of a student taught by a teacher; kdtool.distill.teachers builds each (a test keeps the two lists equal)
KD_LOSSES = ("kd", "dkd", "dist")
# --kd-balance: how a teacher's logits are corrected for the class prior before softening
KD_BALANCES = ("none", "logit-adjust")
# Defaults of --temperature and --beta (the cross-entropy weight) per student method: each paper's CIFAR-100
# setting (KD: the LLS paper's β = 0, T = 1; KD with --logit-standardize: T = 2 as Sun et al.; DKD: CE + DKD at
# T = 4; DIST: CE + DIST at T = 4); LLS-ST as KD.
DEFAULT_TEMPERATURE = {"kd": 1.0, "kd+standardize": 2.0, "dkd": 4.0, "dist": 4.0, "lls-st": 1.0}
DEFAULT_BETA = {"kd": 0.0, "dkd": 1.0, "dist": 1.0, "lls-st": 0.0}


def _taught(c: Any) -> bool:
    """A student taught by a teacher's logits (``--teacher`` or ``--teacher-cache``), not by a Q artifact."""
    return c.substitute_q is None


def _kd_loss(*names: str) -> Applies:
    return Applies("kd_loss", lambda c: _taught(c) and c.kd_loss in names, "--kd-loss " + " and ".join(names))


# A student's options: where its knowledge comes from, and the loss of each source.
DISTILL_APPLIES: dict[str, Applies] = {
    "teacher": Applies("smoothing", lambda c: c.teacher is not None, "--teacher"),
    "teacher_cache": Applies("smoothing", lambda c: c.teacher_cache is not None, "--teacher-cache"),
    "approximate_cache": Applies("teacher_cache", lambda c: c.teacher_cache is not None, "--teacher-cache"),
    "substitute_q": Applies("smoothing", lambda c: not _taught(c), "--substitute-q (LLS-ST)"),
    "alpha": Applies("smoothing", lambda c: not _taught(c), "--substitute-q (LLS-ST)"),
    "kd_loss": Applies("smoothing", _taught, "--teacher and --teacher-cache"),
    "logit_standardize": _kd_loss("kd", "dkd"),
    "dkd_alpha": _kd_loss("dkd"),
    "dkd_beta": _kd_loss("dkd"),
    "dkd_warmup_epochs": _kd_loss("dkd"),
    "dist_beta": _kd_loss("dist"),
    "dist_gamma": _kd_loss("dist"),
    "kd_balance": Applies("smoothing", _taught, "--teacher and --teacher-cache"),
    "class_weights": Applies(
        "kd_loss",
        lambda c: not (_taught(c) and c.kd_loss == "dist"),
        "every method but --kd-loss dist (whose inter-class term correlates the batch)",
    ),
}


@dataclass
class DistillConfig(TrainConfig):
    """A student run: the shared options plus where the knowledge comes from and which data it sees.

    The student architecture is ``model``; ``smoothing`` records the method: the ``kd_loss`` (``kd``,
    ``dkd``, ``dist``) of a student taught by a teacher, ``lls-st`` for one taught by a Q artifact.
    ``beta`` and ``temperature`` default per method (:data:`DEFAULT_BETA`, :data:`DEFAULT_TEMPERATURE`).
    """

    kind: ClassVar[str] = "distill"
    applies: ClassVar[Mapping[str, Applies]] = {**APPLIES, **DISTILL_APPLIES}

    smoothing: str = "kd"
    teacher: str | None = None
    teacher_cache: str | None = None
    approximate_cache: bool = False
    substitute_q: str | None = None
    kd_loss: str = "kd"
    logit_standardize: bool = False
    dkd_alpha: float = 1.0
    dkd_beta: float = 8.0
    dkd_warmup_epochs: int = 20
    dist_beta: float = 2.0
    dist_gamma: float = 2.0
    kd_balance: str = "none"  # logit-adjust: teacher logits minus τ·log π before softening
    alpha: float | None = None
    beta: float | None = None
    temperature: float | None = None
    classes: list[str] | None = None
    class_indices: list[int] | None = None
    sample_fraction: float = 1.0

    def check_method(self) -> None:
        """A student's method follows from its source (see :meth:`resolve`)."""

    def describe_option(self, name: str) -> str:
        if name == "smoothing":  # a student's method is chosen by its source
            sources = (("--substitute-q", self.substitute_q), ("--teacher-cache", self.teacher_cache))
            return "distill " + next((flag for flag, value in sources if value is not None), "--teacher")
        if name == "kd_loss" and not _taught(self):
            return "distill --substitute-q"
        if name == "model":  # a student's network is its --student
            return f"--student {self.model}"
        return super().describe_option(name)

    def resolve(self) -> DistillConfig:
        """Validate the distillation options, then the shared ones; returns ``self``.

        LLS-ST's α defaults to the one its Q artifact records, read here so that the resolved
        options (compared by ``--resume``, ``--seeds`` and ``sweep``) hold the value the run uses;
        ``beta`` and ``temperature`` default per method.
        """
        if sum(source is not None for source in (self.teacher, self.teacher_cache, self.substitute_q)) != 1:
            raise KdtoolError("give exactly one of --teacher RUN (KD), --teacher-cache FILE (KD from a teacher "
                              "cache) or --substitute-q FILE (LLS-ST)")  # fmt: skip
        if _taught(self) and self.alpha is not None:
            raise KdtoolError("--alpha is the LLS-ST mixing weight: it applies to --substitute-q only")
        if self.classes is not None and self.class_indices is not None:
            raise KdtoolError("give the kept classes by name (--classes) or by index (--class-indices), not both")
        if self.kd_loss not in KD_LOSSES:
            raise KdtoolError(f"unknown --kd-loss {self.kd_loss!r}: choose one of {', '.join(KD_LOSSES)}")
        self.smoothing = self.kd_loss if _taught(self) else "lls-st"
        if self.beta is None:
            self.beta = DEFAULT_BETA[self.smoothing]
        if self.temperature is None:
            standardized = self.smoothing == "kd" and self.logit_standardize
            self.temperature = DEFAULT_TEMPERATURE["kd+standardize" if standardized else self.smoothing]
        check_kd_options(self.beta, self.temperature)
        check_dkd_options(self.dkd_alpha, self.dkd_beta, self.dkd_warmup_epochs)
        check_dist_options(self.dist_beta, self.dist_gamma)
        if self.kd_balance not in KD_BALANCES:
            raise KdtoolError(f"unknown --kd-balance {self.kd_balance!r}: choose one of {', '.join(KD_BALANCES)}")
        if self.substitute_q is not None:
            self.substitute_q = str(q_artifact_path(self.substitute_q))  # a run folder stands for its Q
            if self.alpha is None:
                self.alpha = QMatrix.stored_alpha(self.substitute_q)  # the whole artifact is read once, by the run
        super().resolve()
        return self


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
        if _is_text(self):
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
