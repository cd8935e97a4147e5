"""Option declarations shared by the training commands (train-teacher, distill, ...).

Each alias carries its flag's help text once; a command lists the options it takes in its
signature and builds its config from them by name. Nothing here imports torch: ``--help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdtool.errors import KdtoolError

DATA, OPTIM, METHOD, RUN = "Data", "Optimisation", "Method", "Run"

Out = Annotated[Path, typer.Option(help="Run folder to create.", rich_help_panel=RUN)]
Force = Annotated[bool, typer.Option("--force", help="Replace an existing run folder.", rich_help_panel=RUN)]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last complete epoch.",
                                      rich_help_panel=RUN)]  # fmt: skip
Seed = Annotated[int, typer.Option(help="Seed of initialisation, shuffling and augmentation.",
                                   rich_help_panel=RUN)]  # fmt: skip
Seeds = Annotated[str | None, typer.Option(help="Comma list of seeds: one run per seed in `OUT/seed<N>`, one after "
                                           "another (overrides --seed). Re-running skips finished seeds and "
                                           "resumes an interrupted one.", rich_help_panel=RUN,
                                           show_default=False)]  # fmt: skip
Device = Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda, cuda:1 ...", rich_help_panel=RUN)]

Dataset = Annotated[str, typer.Option(help="fashion-mnist (embedded), mnist, cifar10, cifar100, svhn, "
                                      "imagefolder:PATH, wds:PATTERN (tar shards); text: goemotions, "
                                      "goemotions-ekman (embedded), text:PATH.",
                                      rich_help_panel=DATA)]  # fmt: skip
DataRoot = Annotated[Path | None, typer.Option(help="Folder of torchvision datasets.", rich_help_panel=DATA)]
Download = Annotated[bool, typer.Option("--download", help="Download torchvision datasets into --data-root.",
                                        rich_help_panel=DATA)]  # fmt: skip
ImageSize = Annotated[int, typer.Option(help="Square size imagefolder images are resized to.",
                                        rich_help_panel=DATA)]  # fmt: skip
LimitTrain = Annotated[int | None, typer.Option(help="Use at most N training samples (seeded).",
                                                rich_help_panel=DATA)]  # fmt: skip
LimitTest = Annotated[int | None, typer.Option(help="Use at most N test samples (seeded).", rich_help_panel=DATA)]
ImbalanceRatio = Annotated[float | None, typer.Option(help="Long-tailed training split (CIFAR-LT profile): class i "
                                                      "of K keeps ⌊n_max·ρ^(−i/(K−1))⌋ samples (seeded); "
                                                      "validation hold-out drawn first, test split unchanged. Not "
                                                      "for wds:.", metavar="ρ", rich_help_panel=DATA,
                                                      show_default=False)]  # fmt: skip
FAMILY = " Default: by dataset family (docs/training.md, 'Training defaults'): "
Augment = Annotated[str | None, typer.Option(help="'standard' (random crop, and flip where it fits the data), 'none', "
                                             "or a comma list of cutout, mixup, cutmix, randaugment added to the "
                                             "standard ones." + FAMILY + "none for fashion-mnist and mnist, "
                                             "standard for other images.", rich_help_panel=DATA)]  # fmt: skip
NoAugment = Annotated[bool, typer.Option("--no-augment", help="Same as --augment none.", rich_help_panel=DATA)]

STREAM = "Data bigger than memory"
Loader = Annotated[str, typer.Option(help="Data path of imagefolder: and wds: data: memory (decoded once into a "
                                     "tensor on the device), stream (decoded batch by batch in --workers "
                                     "processes) or auto (memory when the decoded data fit in --memory-budget).",
                                     rich_help_panel=STREAM)]  # fmt: skip
MemoryBudget = Annotated[str | None, typer.Option(help="--loader auto: the most decoded data kept in memory, e.g. "
                                                  "8GiB or 500MB (default: half the available RAM, and on a GPU at "
                                                  "most half its free memory).", rich_help_panel=STREAM,
                                                  show_default=False)]  # fmt: skip
Workers = Annotated[int | None, typer.Option(help="Streaming: DataLoader worker processes per training process (0: "
                                             "decode in it; default: its share of the CPU cores, at most 8). "
                                             "Batches do not depend on it.", rich_help_panel=STREAM,
                                             show_default=False)]  # fmt: skip
SkipBadSamples = Annotated[bool, typer.Option("--skip-bad-samples", help="Streaming: skip unreadable images, "
                                              "incomplete samples and truncated shards, counting them in the log, "
                                              "instead of stopping at the first.", rich_help_panel=STREAM)]  # fmt: skip
ValShards = Annotated[str | None, typer.Option(help="wds: evaluation shards, a brace pattern (default: the training "
                                               "pattern with 'val' for 'train', where those exist).",
                                               rich_help_panel=STREAM, show_default=False)]  # fmt: skip
ClassNames = Annotated[Path | None, typer.Option(help="wds: file of class names, one a line, in class-index order "
                                                 "(default: classes.txt beside the training shards).",
                                                 rich_help_panel=STREAM, show_default=False)]  # fmt: skip

TEXT = "Text"
VocabSize = Annotated[int, typer.Option(help="Vocabulary entries (padding and unknown-word tokens included): the "
                                        "most frequent training tokens.", rich_help_panel=TEXT)]  # fmt: skip
MaxLen = Annotated[int, typer.Option(help="Tokens kept per text.", rich_help_panel=TEXT)]
EmbedDim = Annotated[int, typer.Option(help="Embedding size of bilstm/textcnn.", rich_help_panel=TEXT)]
HiddenSize = Annotated[int, typer.Option(help="bilstm: LSTM units per direction; textcnn: filters per width.",
                                         rich_help_panel=TEXT)]  # fmt: skip
WordVectors = Annotated[Path | None, typer.Option(help="GloVe-format text file ('word v1 ... vd' a line) that "
                                                  "initialises the embedding.", rich_help_panel=TEXT)]  # fmt: skip

MODEL_NAMES = ("lenet5, alexnet, resnet18, resnet34, resnet50, mobilenet_v2; text: bilstm, textcnn; any timm:NAME "
               "or torchvision:NAME (kdtool models lists them).")  # fmt: skip
Model = Annotated[str, typer.Option(help=MODEL_NAMES, rich_help_panel=METHOD)]
ZOO = "Zoo models (timm:, torchvision:)"
Pretrained = Annotated[str | None, typer.Option(help="Start from pretrained weights: a safetensors or PyTorch "
                                                "state-dict file (head resized, first convolution adapted), or "
                                                "'hub' for the zoo's own download.", metavar="FILE|hub",
                                                rich_help_panel=ZOO, show_default=False)]  # fmt: skip
InputSize = Annotated[int | None, typer.Option(help="Square size the network reads; batches are resized on the "
                                               "device (default: the pretrained weights' own size, else the "
                                               "data's).", rich_help_panel=ZOO, show_default=False)]  # fmt: skip
InputNorm = Annotated[str | None, typer.Option(help="Normalise inputs by the model's own mean/std or the "
                                               "dataset's: model or dataset (default: model when pretrained).",
                                               rich_help_panel=ZOO, show_default=False)]  # fmt: skip
Smoothing = Annotated[str, typer.Option(help="Training method: onehot, ls, lls, ols, tfkd-reg, tfkd-self (--teacher), "
                                        "zipf, focal (--focal-gamma), prior (--prior); long-tailed data: "
                                        "logit-adjust (--tau) or label-aware (MiSLAS's per-class ε).",
                                        rich_help_panel=METHOD)]  # fmt: skip
Epsilon = Annotated[float, typer.Option(help="LS and prior: smoothing mass ε in (0,1).", rich_help_panel=METHOD)]
Alpha = Annotated[float, typer.Option(help="LLS: mixing weight α in (0,1).", rich_help_panel=METHOD)]
LlsTerms = Annotated[
    str,
    typer.Option(
        help="LLS: terms to keep, 'all' or a comma list of target-entropy, forward-ce, prediction-entropy, reverse-ce.",
        rich_help_panel=METHOD,
    ),
]
LlsCorrection = Annotated[str, typer.Option(help="LLS on imbalanced data: none, prior (target softmax(Q[y] − τ·log "
                                            "π)), adjusted (loss on softmax(z + τ·log π)) or alpha (α_y = "
                                            "α·n_y/n_max).", rich_help_panel=METHOD)]  # fmt: skip
Tau = Annotated[float, typer.Option(help="τ of τ·log π (class prior of the training split): logit-adjust, "
                                    "--lls-correction prior/adjusted, --kd-balance.",
                                    rich_help_panel=METHOD)]  # fmt: skip
ClassWeights = Annotated[str, typer.Option(help="Weight each sample by its class: none or effective (class-balanced, "
                                           "(1−β)/(1−β^n_y), summing to K; Cui et al. 2019).",
                                           rich_help_panel=METHOD)]  # fmt: skip
CbBeta = Annotated[float, typer.Option(help="--class-weights effective: β in (0,1).", rich_help_panel=METHOD)]
QWeightDecay = Annotated[float | None, typer.Option(help="LLS: weight decay of Q (default: --weight-decay).",
                                                    rich_help_panel=METHOD)]  # fmt: skip
QUpdate = Annotated[str, typer.Option(help="LLS: how Q is updated: dense (all K² entries every step), sparse (only "
                                      "the rows of the batch's labels, the others caught up exactly when read: the "
                                      "same training, per-step cost O(batch × K)) or auto (sparse from 1,000 "
                                      "classes).", rich_help_panel=METHOD)]  # fmt: skip
SelfTeacher = Annotated[Path | None, typer.Option("--teacher", help="tfkd-self: run folder of a trained copy of "
                                                  "the student.", rich_help_panel=METHOD)]  # fmt: skip
TfkdTemperature = Annotated[float, typer.Option(help="TF-KD: temperature τ of teacher and student.",
                                                rich_help_panel=METHOD)]  # fmt: skip
TfkdWeight = Annotated[float, typer.Option(help="TF-KD: weight α of the KD term in [0,1]; CE gets 1-α.",
                                           rich_help_panel=METHOD)]  # fmt: skip
TfkdMultiplier = Annotated[float, typer.Option(help="TF-KD: extra factor m on the KD term (docs/methods.md: "
                                               "matching the reference code).", rich_help_panel=METHOD)]  # fmt: skip
TfkdCorrectProb = Annotated[float, typer.Option(help="tfkd-reg: virtual teacher's probability a of the true class.",
                                                rich_help_panel=METHOD)]  # fmt: skip
ZipfWeight = Annotated[float, typer.Option(help="zipf: weight λ of KL(Zipf target ‖ prediction).",
                                           rich_help_panel=METHOD)]  # fmt: skip
ZipfExponent = Annotated[float, typer.Option(help="zipf: exponent s, mass ∝ 1/rank^s.", rich_help_panel=METHOD)]
FocalGamma = Annotated[str, typer.Option(help="focal: γ ≥ 0 (3 = FL-3), or 'adaptive' (FLSD-53: 5 if p_y < 0.2, "
                                         "else 3).", rich_help_panel=METHOD)]  # fmt: skip
Prior = Annotated[Path | None, typer.Option(help="prior: Q artifact of a fixed smoothing distribution θ "
                                            "(kdtool make-prior).", rich_help_panel=METHOD)]  # fmt: skip

Epochs = Annotated[int, typer.Option(help="Training epochs.", rich_help_panel=OPTIM)]
BatchSize = Annotated[int, typer.Option(help="Batch size.", rich_help_panel=OPTIM)]
Lr = Annotated[float | None, typer.Option(help="Peak learning rate (SGD, momentum 0.9)." + FAMILY + "0.05 "
                                          "for fashion-mnist and mnist, 0.1 otherwise.",
                                          rich_help_panel=OPTIM)]  # fmt: skip
WeightDecay = Annotated[float, typer.Option(help="Weight decay of the network.", rich_help_panel=OPTIM)]
DecayBiasNorm = Annotated[bool, typer.Option("--decay-bias-norm/--no-decay-bias-norm", help="Weight decay on "
                                             "biases and normalisation parameters too (default: off, as timm).",
                                             rich_help_panel=OPTIM)]  # fmt: skip
MixupAlpha = Annotated[
    float,
    typer.Option(
        help="mixup, cutmix: λ ~ Beta(α, α) (1: uniform; 0.2 was better on validation).", rich_help_panel=DATA
    ),
]
ValFraction = Annotated[float, typer.Option(help="Hold out this stratified fraction of the training set for "
                                           "validation. Datasets with an official validation split (goemotions, "
                                           "goemotions-ekman, text:PATH with validation.tsv) always use it and "
                                           "refuse this option.", rich_help_panel=OPTIM)]  # fmt: skip
Select = Annotated[str | None, typer.Option(help="Weights to keep: last, best-val-loss, best-val-acc, best-val-f1 "
                                            "(macro-F1) or best-val-balanced-acc (imbalanced training data). "
                                            "Default: best-val-loss when there is a validation split "
                                            "(--val-fraction, or the dataset's official one), else last.",
                                            rich_help_panel=OPTIM)]  # fmt: skip
EarlyStopping = Annotated[int, typer.Option(help="Stop after N epochs without a lower validation loss (0: off).",
                                            rich_help_panel=OPTIM)]  # fmt: skip
Schedule = Annotated[str | None, typer.Option(help="LR schedule after warm-up: multistep (at --milestones), "
                                              "cosine, or constant. Default: cosine (the paper recipes pass "
                                              "multistep).", rich_help_panel=OPTIM)]  # fmt: skip
WarmupEpochs = Annotated[float | None, typer.Option(help="Linear warm-up epochs, at most half the run (default: a "
                                                    "tenth of the run, at least 1, at most 5, and 0.5 for a 1-epoch "
                                                    "run).", rich_help_panel=OPTIM)]  # fmt: skip
Milestones = Annotated[
    str,
    typer.Option(
        help="Epochs where the LR is multiplied by --gamma, e.g. 100,150 (default: 50% and 75% of --epochs).",
        rich_help_panel=OPTIM,
    ),
]
Gamma = Annotated[float, typer.Option(help="LR decay factor at each milestone.", rich_help_panel=OPTIM)]

SPEED = "Speed"
Amp = Annotated[str, typer.Option(help="Mixed precision: none, bf16 (autocast; on a CPU without native bf16 it is "
                                  "slower) or fp16 (CUDA only, with a gradient scaler).",
                                  rich_help_panel=SPEED)]  # fmt: skip
ChannelsLast = Annotated[bool, typer.Option("--channels-last", help="Channels-last memory format for the network "
                                            "and its batches (faster convolutions on CPUs and on GPUs with AMP).",
                                            rich_help_panel=SPEED)]  # fmt: skip
Compile = Annotated[bool, typer.Option("--compile", help="torch.compile the network (minutes of compiling first; "
                                       "falls back to eager, saying why, where unavailable).",
                                       rich_help_panel=SPEED)]  # fmt: skip

TRACKING = "Tracking"
Log = Annotated[str, typer.Option(help="Experiment trackers, a comma list: csv (metrics.csv, always written), "
                                  "tensorboard (event files in OUT/tensorboard), mlflow, wandb (its files in "
                                  "OUT/wandb; WANDB_MODE=offline works without network). Each but csv is an "
                                  'optional extra: pip install "kdtool[NAME]". Under torchrun write '
                                  "`torchrun ... -m kdtool -- train-teacher --log ...`.",
                                  rich_help_panel=TRACKING)]  # fmt: skip
MlflowUri = Annotated[str | None, typer.Option(help="--log mlflow: tracking store, a server URL or sqlite:///FILE "
                                               "(default: MLflow's, MLFLOW_TRACKING_URI if set).",
                                               rich_help_panel=TRACKING, show_default=False)]  # fmt: skip
MlflowExperiment = Annotated[str, typer.Option(help="--log mlflow: experiment name.", rich_help_panel=TRACKING)]
WandbProject = Annotated[str, typer.Option(help="--log wandb: project name.", rich_help_panel=TRACKING)]


def as_text(path: Path | None) -> str | None:
    """A path option as config.json records it."""
    return None if path is None else str(path)


def given_options(ctx: typer.Context, renamed: dict[str, str] | None = None) -> dict[str, str]:
    """The options typed on the command line, as ``{config name: flag}``.

    Defaults never count: only what the user wrote can be refused as not applying to the run.
    ``renamed`` maps a parameter to its config name where they differ (``student`` -> ``model``).
    """
    renamed = renamed or {}
    given = {}
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is not None and source.name == "COMMANDLINE":
            flag = max(param.opts, key=len) if param.opts else param.name
            given[renamed.get(param.name, param.name)] = flag
    if "augment" in given and "no_augment" in given:
        raise KdtoolError("--augment and --no-augment contradict each other: give one of them")
    if "no_augment" in given:
        given["augment"] = given.pop("no_augment")
    return given


def refuse_unused(ctx: typer.Context, uses: dict[str, tuple[bool, str]]) -> None:
    """Refuse options typed on the command line that this invocation will not use.

    ``uses``: parameter name -> (whether it is used now, what uses it), e.g.
    ``{"device": (from_teacher, "with --from-teacher")}``.
    """
    given = given_options(ctx)
    for name, (used, by) in uses.items():
        if name in given and not used:
            raise KdtoolError(f"{given[name]} does not apply here: it is used {by} only; remove it")
