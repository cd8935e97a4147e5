"""``kdtool distill``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kdtool.cli import options as opt
from kdtool.cli.app import app, parse_int_list
from kdtool.cli.runner import run_command
from kdtool.cli.train import train_run
from kdtool.q.subsets import parse_name_list

SOURCE = "Distillation"

Teacher = Annotated[Path | None, typer.Option(help="Run folder of the teacher (Hinton KD).", rich_help_panel=SOURCE)]
TeacherCache = Annotated[Path | None, typer.Option(help="Teacher cache (kdtool cache-teacher) replayed instead of "
                                                   "running the teacher: KD losses only.", rich_help_panel=SOURCE,
                                                   show_default=False)]  # fmt: skip
ApproximateCache = Annotated[bool, typer.Option("--approximate-cache", help="Accept a teacher cache of the top-k < K "
                                                "logits: every KD loss from it is an approximation of the live "
                                                "teacher's (the run's header and config.json say so).",
                                                rich_help_panel=SOURCE)]  # fmt: skip
SubstituteQ = Annotated[Path | None, typer.Option(help="Q artifact used instead of a teacher (LLS-ST).",
                                                  rich_help_panel=SOURCE)]  # fmt: skip
Student = Annotated[str, typer.Option(help="Student network: " + opt.MODEL_NAMES, rich_help_panel=opt.METHOD)]
Alpha = Annotated[float | None, typer.Option(help="LLS-ST: mixing weight α in (0,1) (default: the Q artifact's).",
                                             rich_help_panel=SOURCE)]  # fmt: skip
Beta = Annotated[float | None, typer.Option(help="Weight β in [0,1] of the hard-label cross-entropy (default: 0 "
                                            "for kd and LLS-ST, 1 for dkd and dist).", rich_help_panel=SOURCE,
                                            show_default=False)]  # fmt: skip
Temperature = Annotated[float | None, typer.Option(help="Softmax temperature T of teacher and student, soft term ×T² "
                                                   "(default: 1 for kd and LLS-ST, 2 for kd with "
                                                   "--logit-standardize, 4 for dkd and dist).",
                                                   rich_help_panel=SOURCE, show_default=False)]  # fmt: skip
KD = "Distillation loss"
KdLoss = Annotated[str, typer.Option(help="With a teacher or its cache: kd (Hinton), dkd (decoupled KD, Zhao et al. "
                                     "2022) or dist (DIST, Huang et al. 2022).", rich_help_panel=KD)]  # fmt: skip
LogitStandardize = Annotated[bool, typer.Option("--logit-standardize", help="kd, dkd: z-score student and teacher "
                                                "logits before the temperature (Sun et al. 2024).",
                                                rich_help_panel=KD)]  # fmt: skip
DkdAlpha = Annotated[float, typer.Option(help="dkd: weight α of the target-class term TCKD.", rich_help_panel=KD)]
DkdBeta = Annotated[float, typer.Option(help="dkd: weight β of the non-target term NCKD (the paper tunes it per "
                                        "teacher, 1-8).", rich_help_panel=KD)]  # fmt: skip
DkdWarmupEpochs = Annotated[int, typer.Option(help="dkd: epochs over which the DKD term's weight rises linearly to 1.",
                                              rich_help_panel=KD)]  # fmt: skip
DistBeta = Annotated[float, typer.Option(help="dist: weight β of the inter-class (per sample) relation term.",
                                         rich_help_panel=KD)]  # fmt: skip
KdBalance = Annotated[str, typer.Option(help="With a teacher or its cache: none, or logit-adjust (teacher logits minus "
                                        "τ·log π of the training split before softening, for every --kd-loss).",
                                        rich_help_panel=KD)]  # fmt: skip
DistGamma = Annotated[float, typer.Option(help="dist: weight γ of the intra-class (per class) relation term.",
                                          rich_help_panel=KD)]  # fmt: skip
Classes = Annotated[str | None, typer.Option(help="Keep only these classes, by name, in this order: \"a,b,c\".",
                                             rich_help_panel=opt.DATA)]  # fmt: skip
ClassIndices = Annotated[str | None, typer.Option(help="Keep only these classes, by index, in this order: 0,2,4.",
                                                  rich_help_panel=opt.DATA)]  # fmt: skip
SampleFraction = Annotated[float, typer.Option(help="Train on this fraction of each class, in (0,1] (seeded; test "
                                               "set unchanged).", rich_help_panel=opt.DATA)]  # fmt: skip


@app.command("distill")
def distill(
    ctx: typer.Context,
    teacher: Teacher = None,
    teacher_cache: TeacherCache = None,
    approximate_cache: ApproximateCache = False,
    substitute_q: SubstituteQ = None,
    alpha: Alpha = None,
    beta: Beta = None,
    temperature: Temperature = None,
    kd_loss: KdLoss = "kd",
    logit_standardize: LogitStandardize = False,
    dkd_alpha: DkdAlpha = 1.0,
    dkd_beta: DkdBeta = 8.0,
    dkd_warmup_epochs: DkdWarmupEpochs = 20,
    dist_beta: DistBeta = 2.0,
    dist_gamma: DistGamma = 2.0,
    kd_balance: KdBalance = "none",
    tau: opt.Tau = 1.0,
    class_weights: opt.ClassWeights = "none",
    cb_beta: opt.CbBeta = 0.9999,
    student: Student = "lenet5",
    pretrained: opt.Pretrained = None,
    input_size: opt.InputSize = None,
    input_norm: opt.InputNorm = None,
    out: opt.Out = Path("runs/student"),
    dataset: opt.Dataset = "fashion-mnist",
    data_root: opt.DataRoot = None,
    download: opt.Download = False,
    image_size: opt.ImageSize = 64,
    classes: Classes = None,
    class_indices: ClassIndices = None,
    sample_fraction: SampleFraction = 1.0,
    limit_train: opt.LimitTrain = None,
    limit_test: opt.LimitTest = None,
    imbalance_ratio: opt.ImbalanceRatio = None,
    augment: opt.Augment = None,
    no_augment: opt.NoAugment = False,
    vocab_size: opt.VocabSize = 20000,
    max_len: opt.MaxLen = 128,
    embed_dim: opt.EmbedDim = 128,
    hidden_size: opt.HiddenSize = 128,
    word_vectors: opt.WordVectors = None,
    epochs: opt.Epochs = 10,
    batch_size: opt.BatchSize = 128,
    lr: opt.Lr = None,
    weight_decay: opt.WeightDecay = 5e-4,
    decay_bias_norm: opt.DecayBiasNorm = False,
    mixup_alpha: opt.MixupAlpha = 0.2,
    schedule: opt.Schedule = None,
    warmup_epochs: opt.WarmupEpochs = None,
    val_fraction: opt.ValFraction = 0.0,
    select: opt.Select = None,
    early_stopping: opt.EarlyStopping = 0,
    milestones: opt.Milestones = "",
    gamma: opt.Gamma = 0.1,
    seed: opt.Seed = 0,
    seeds: opt.Seeds = None,
    device: opt.Device = "auto",
    amp: opt.Amp = "none",
    channels_last: opt.ChannelsLast = False,
    compile: opt.Compile = False,
    log: opt.Log = "csv",
    mlflow_uri: opt.MlflowUri = None,
    mlflow_experiment: opt.MlflowExperiment = "kdtool",
    wandb_project: opt.WandbProject = "kdtool",
    loader: opt.Loader = "auto",
    memory_budget: opt.MemoryBudget = None,
    workers: opt.Workers = None,
    skip_bad_samples: opt.SkipBadSamples = False,
    val_shards: opt.ValShards = None,
    class_names: opt.ClassNames = None,
    force: opt.Force = False,
    resume: opt.Resume = False,
) -> Any:
    """Train a student from a teacher run or its cache (KD, DKD, DIST) or from a Q artifact alone (LLS-ST).

    Give exactly one of --teacher, --teacher-cache and --substitute-q. A teacher cache (kdtool cache-teacher)
    replays, in epoch e, view e mod V of every sample with exactly the augmentation it was cached with, and its
    logits stand for the teacher's: no teacher network is built. The loss is
    β·CE(e_y, p) + (1-β)·T²·KL(teacher ‖ student) at temperature T, KL summed over classes then averaged over
    the batch. LLS-ST's teacher output for a sample of class y is (1-α)e_y + α·softmax(Q[y]); no teacher
    network is run. The run folder is the same as train-teacher's (plus the Q used, for LLS-ST).

    With a teacher, --kd-loss dkd trains with β·CE + w·T²·(α·TCKD + β_dkd·NCKD), w rising from 0 to 1 over
    --dkd-warmup-epochs, and --kd-loss dist with β·CE + T²·(β_dist·inter + γ·intra) relation terms; their
    defaults are each paper's CIFAR-100 setting (docs/distill.md).

    **Examples**

    ```
    kdtool distill --teacher runs/fmnist-lls --student lenet5 --beta 0 --temperature 1 --out runs/st-kd
    kdtool distill --substitute-q artifacts/fmnist.q.safetensors --alpha 0.1 --student lenet5 --out runs/st-llsst
    kdtool distill --substitute-q artifacts/fmnist.q.safetensors --classes "T-shirt/top,Pullover,Coat,Shirt" \\
        --out runs/st-tops
    kdtool distill --teacher runs/fmnist-lls --sample-fraction 0.5 --seed 1 --out runs/st-half
    kdtool distill --teacher runs/fmnist-lls --kd-loss dkd --dkd-beta 2 --out runs/st-dkd
    kdtool distill --substitute-q artifacts/fmnist.q.safetensors --seeds 0,1,2 --out runs/st   # runs/st/seed0 ...
    kdtool distill --teacher runs/lt-teacher --imbalance-ratio 100 --kd-balance logit-adjust --out runs/st-bal
    ```
    """
    from kdtool.config.runconfig import DistillConfig

    cfg = DistillConfig(
        teacher=opt.as_text(teacher),
        teacher_cache=opt.as_text(teacher_cache),
        approximate_cache=approximate_cache,
        substitute_q=opt.as_text(substitute_q),
        alpha=alpha,
        beta=beta,
        temperature=temperature,
        kd_loss=kd_loss,
        logit_standardize=logit_standardize,
        dkd_alpha=dkd_alpha,
        dkd_beta=dkd_beta,
        dkd_warmup_epochs=dkd_warmup_epochs,
        dist_beta=dist_beta,
        dist_gamma=dist_gamma,
        kd_balance=kd_balance,
        tau=tau,
        class_weights=class_weights,
        cb_beta=cb_beta,
        model=student,
        out=str(out),
        dataset=dataset,
        data_root=opt.as_text(data_root),
        download=download,
        image_size=image_size,
        classes=None if classes is None else parse_name_list(classes),
        class_indices=None if class_indices is None else parse_int_list(class_indices, "--class-indices"),
        sample_fraction=sample_fraction,
        limit_train=limit_train,
        limit_test=limit_test,
        imbalance_ratio=imbalance_ratio,
        augment="none" if no_augment else augment,
        vocab_size=vocab_size,
        max_len=max_len,
        embed_dim=embed_dim,
        hidden_size=hidden_size,
        word_vectors=opt.as_text(word_vectors),
        pretrained=pretrained,
        input_size=input_size,
        input_norm=input_norm,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        decay_bias_norm=decay_bias_norm,
        mixup_alpha=mixup_alpha,
        schedule=schedule,
        warmup_epochs=warmup_epochs,
        milestones=parse_int_list(milestones, "--milestones"),
        gamma=gamma,
        seed=seed,
        device=device,
        val_fraction=val_fraction,
        select=select,
        early_stopping=early_stopping,
        amp=amp,
        channels_last=channels_last,
        compile=compile,
        log=log,
        mlflow_uri=mlflow_uri,
        mlflow_experiment=mlflow_experiment,
        wandb_project=wandb_project,
        loader=loader,
        memory_budget=memory_budget,
        workers=workers,
        skip_bad_samples=skip_bad_samples,
        val_shards=val_shards,
        class_names=opt.as_text(class_names),
    )

    return run_command(ctx, cfg, opt.given_options(ctx, {"student": "model"}), force, resume, seeds, train_run)
