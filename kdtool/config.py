"""The resolved options of a training run; ``config.json`` is this dataclass plus provenance."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from kdtool.accel import check_amp
from kdtool.data.augment import parse_augment
from kdtool.data.text import resolve_text_options
from kdtool.errors import KdtoolError
from kdtool.selection import SELECT_CHOICES
from kdtool.targets.focal import parse_focal_gamma
from kdtool.targets.kd import check_kd_options
from kdtool.targets.lls import parse_lls_terms
from kdtool.targets.simple import check_unit_interval
from kdtool.targets.tfkd import check_tfkd_options
from kdtool.targets.zipf import check_zipf_options

SCHEDULES = ("multistep", "cosine", "constant")


@dataclass
class TrainConfig:
    """Every option that shapes a run. Defaults follow the LLS paper where it states one."""

    dataset: str = "fashion-mnist"
    model: str = "lenet5"
    smoothing: str = "lls"
    out: str = "runs/run"
    data_root: str | None = None
    download: bool = False
    image_size: int = 64
    limit_train: int | None = None
    limit_test: int | None = None
    augment: str = "standard"
    vocab_size: int = 20000  # text: vocabulary entries, <pad> and <unk> included
    max_len: int = 128  # text: tokens kept per text
    embed_dim: int = 128  # text models: embedding size
    hidden_size: int = 128  # text models: LSTM units per direction / CNN filters per width
    word_vectors: str | None = None  # text models: GloVe-format file initialising the embedding
    epsilon: float = 0.1
    alpha: float = 0.1
    lls_terms: str = "all"
    q_weight_decay: float | None = None
    teacher: str | None = None
    tfkd_temperature: float = 20.0
    tfkd_weight: float = 0.1
    tfkd_multiplier: float = 1.0
    tfkd_correct_prob: float = 0.9
    zipf_weight: float = 1.0
    zipf_exponent: float = 1.0
    focal_gamma: str = "3"
    prior: str | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "multistep"
    warmup_epochs: int | None = None
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 1024
    val_fraction: float = 0.0
    select: str | None = None
    early_stopping: int = 0
    amp: str = "none"  # mixed precision: none, bf16, fp16 (see kdtool.accel)
    channels_last: bool = False
    compile: bool = False

    def resolve(self) -> TrainConfig:
        """Validate every option and fill the derived defaults; returns ``self``."""
        if self.epochs <= 0:
            raise KdtoolError(f"--epochs must be positive, got {self.epochs}")
        if self.batch_size <= 0:
            raise KdtoolError(f"--batch-size must be positive, got {self.batch_size}")
        if self.lr <= 0:
            raise KdtoolError(f"--lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise KdtoolError(f"--weight-decay must be ≥ 0, got {self.weight_decay}")
        check_unit_interval("--epsilon", self.epsilon)
        if self.alpha is not None:  # None: a distill run, whose α (if any) comes from its Q artifact
            check_unit_interval("--alpha", self.alpha)
        self.lls_terms = ",".join(parse_lls_terms(self.lls_terms))
        self.augment = ",".join(parse_augment(self.augment)) or "none"
        resolve_text_options(self)
        check_tfkd_options(self.tfkd_temperature, self.tfkd_weight, self.tfkd_multiplier, self.tfkd_correct_prob)
        check_zipf_options(self.zipf_weight, self.zipf_exponent)
        self.focal_gamma = str(parse_focal_gamma(self.focal_gamma))
        self.amp = check_amp(self.amp)
        if self.smoothing == "tfkd-self" and self.teacher is None:
            raise KdtoolError("--smoothing tfkd-self needs --teacher RUN, a trained run of the same network")
        if self.smoothing == "prior" and self.prior is None:
            raise KdtoolError("--smoothing prior needs --prior FILE, a Q artifact (see kdtool make-prior)")
        if self.q_weight_decay is None:
            self.q_weight_decay = self.weight_decay
        if not 0.0 <= self.val_fraction < 1.0:
            raise KdtoolError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        has_val = self.val_fraction > 0
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
            # The paper warms up for 5 of 200 epochs; short runs get about a tenth of their length.
            self.warmup_epochs = min(5, self.epochs // 10)
        if self.warmup_epochs < 0:
            raise KdtoolError(f"--warmup-epochs must be ≥ 0, got {self.warmup_epochs}")
        if not self.milestones:
            # As in the paper's 200-epoch schedules (100, 150): decay at 50% and 75% of training.
            self.milestones = sorted({max(1, self.epochs // 2), max(1, (3 * self.epochs) // 4)})
        if any(m <= 0 for m in self.milestones):
            raise KdtoolError(f"--milestones must be positive epochs, got {self.milestones}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class DistillConfig(TrainConfig):
    """A student run: the shared options plus where the knowledge comes from and which data it sees.

    The student architecture is ``model``; ``smoothing`` records the method (``kd`` or ``lls-st``).
    """

    teacher: str | None = None
    substitute_q: str | None = None
    alpha: float | None = None
    beta: float = 0.0
    temperature: float = 1.0
    classes: list[str] | None = None
    class_indices: list[int] | None = None
    sample_fraction: float = 1.0

    def resolve(self) -> DistillConfig:
        """Validate the distillation options, then the shared ones; returns ``self``."""
        if (self.teacher is None) == (self.substitute_q is None):
            raise KdtoolError("give exactly one of --teacher RUN (Hinton KD) or --substitute-q FILE (LLS-ST)")
        if self.teacher is not None and self.alpha is not None:
            raise KdtoolError("--alpha is the LLS-ST mixing weight: it applies to --substitute-q only")
        if self.classes is not None and self.class_indices is not None:
            raise KdtoolError("give the kept classes by name (--classes) or by index (--class-indices), not both")
        check_kd_options(self.beta, self.temperature)
        self.smoothing = "kd" if self.teacher is not None else "lls-st"
        super().resolve()
        return self
