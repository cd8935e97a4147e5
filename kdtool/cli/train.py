"""``kdtool train-teacher``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from kdtool.cli import options as opt
from kdtool.cli.app import app, console, parse_int_list
from kdtool.cli.runner import run_command

if TYPE_CHECKING:
    from kdtool.config.runconfig import TrainConfig


@app.command("train-teacher")
def train_teacher(
    ctx: typer.Context,
    out: opt.Out = Path("runs/teacher"),
    dataset: opt.Dataset = "fashion-mnist",
    data_root: opt.DataRoot = None,
    download: opt.Download = False,
    image_size: opt.ImageSize = 64,
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
    model: opt.Model = "lenet5",
    pretrained: opt.Pretrained = None,
    input_size: opt.InputSize = None,
    input_norm: opt.InputNorm = None,
    smoothing: opt.Smoothing = "lls",
    epsilon: opt.Epsilon = 0.1,
    alpha: opt.Alpha = 0.1,
    lls_terms: opt.LlsTerms = "all",
    q_weight_decay: opt.QWeightDecay = None,
    q_update: opt.QUpdate = "auto",
    teacher: opt.SelfTeacher = None,
    tfkd_temperature: opt.TfkdTemperature = 20.0,
    tfkd_weight: opt.TfkdWeight = 0.1,
    tfkd_multiplier: opt.TfkdMultiplier = 1.0,
    tfkd_correct_prob: opt.TfkdCorrectProb = 0.9,
    zipf_weight: opt.ZipfWeight = 1.0,
    zipf_exponent: opt.ZipfExponent = 1.0,
    focal_gamma: opt.FocalGamma = "3",
    prior: opt.Prior = None,
    lls_correction: opt.LlsCorrection = "none",
    tau: opt.Tau = 1.0,
    class_weights: opt.ClassWeights = "none",
    cb_beta: opt.CbBeta = 0.9999,
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
    """Train a teacher network with 1-hot, LS, LLS or a baseline method and write a run folder.

    The run folder holds config.json, metrics.csv, model.safetensors and, for LLS, q.safetensors.

    **Examples**

    ```
    kdtool train-teacher --smoothing lls --alpha 0.1 --epochs 10 --out runs/fmnist-lls
    kdtool train-teacher --dataset cifar100 --data-root ~/data --download --model resnet18 --smoothing ls \\
        --epsilon 0.1 --epochs 200 --milestones 100,150 --out runs/c100-ls
    kdtool train-teacher --smoothing lls --lls-terms forward-ce,reverse-ce,target-entropy --out runs/no-pent
    kdtool train-teacher --smoothing lls --epochs 10 --out runs/fmnist-lls --resume    # after an interruption
    kdtool train-teacher --smoothing lls --log tensorboard --out runs/lls        # then: tensorboard --logdir runs
    kdtool train-teacher --smoothing lls --log mlflow --mlflow-uri sqlite:///mlruns.db --out runs/lls2
    kdtool train-teacher --smoothing lls --epochs 10 --seeds 0,1,2 --out runs/fmnist-lls   # runs/fmnist-lls/seed0 ...
    kdtool train-teacher --smoothing focal --focal-gamma adaptive --out runs/flsd53
    kdtool train-teacher --smoothing tfkd-reg --tfkd-temperature 20 --tfkd-weight 0.1 --tfkd-multiplier 100 \\
        --out runs/tfkd
    kdtool train-teacher --smoothing prior --prior artifacts/fmnist-superclass.q.safetensors --epsilon 0.1 \\
        --out runs/cls
    kdtool train-teacher --smoothing lls --augment cutmix,randaugment --out runs/lls-cutmix
    kdtool train-teacher --dataset goemotions-ekman --model bilstm --smoothing lls --out runs/ge-lls
    kdtool train-teacher --imbalance-ratio 100 --val-fraction 0.1 --select best-val-balanced-acc \
        --smoothing logit-adjust --tau 1 --out runs/lt-la
    kdtool train-teacher --imbalance-ratio 100 --smoothing lls --lls-correction prior --out runs/lt-lls-prior
    kdtool train-teacher --dataset text:./my_data --model textcnn --word-vectors glove.6B.100d.txt --embed-dim 100 \\
        --out runs/mine
    torchrun --nproc-per-node 4 -m kdtool train-teacher --dataset cifar100 --data-root ~/data --out runs/c100
    ```
    """
    from kdtool.config.runconfig import TrainConfig

    cfg = TrainConfig(
        dataset=dataset,
        model=model,
        smoothing=smoothing,
        out=str(out),
        data_root=opt.as_text(data_root),
        download=download,
        image_size=image_size,
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
        epsilon=epsilon,
        alpha=alpha,
        lls_terms=lls_terms,
        q_weight_decay=q_weight_decay,
        q_update=q_update,
        teacher=opt.as_text(teacher),
        tfkd_temperature=tfkd_temperature,
        tfkd_weight=tfkd_weight,
        tfkd_multiplier=tfkd_multiplier,
        tfkd_correct_prob=tfkd_correct_prob,
        zipf_weight=zipf_weight,
        zipf_exponent=zipf_exponent,
        focal_gamma=focal_gamma,
        prior=opt.as_text(prior),
        lls_correction=lls_correction,
        tau=tau,
        class_weights=class_weights,
        cb_beta=cb_beta,
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
    return run_command(ctx, cfg, opt.given_options(ctx), force, resume, seeds, train_run)


def train_run(cfg: TrainConfig, force: bool, resume: bool) -> None:
    """Train the run folder ``cfg.out`` with the pipeline of its kind (train-teacher or distill), then print
    its closing lines."""
    from kdtool.workflows import pipeline

    train = pipeline.distill if cfg.kind == "distill" else pipeline.train_teacher
    run, rows = train(cfg, force, console, resume=resume)
    report_run(run.path, rows)


def report_run(path: Path, rows: list[dict[str, float]]) -> None:
    """The closing lines every training command prints: the test metrics of the epoch whose weights were kept."""
    from kdtool.runs.folder import selected_row

    kept = selected_row(rows)
    epoch = f"epoch {int(kept['epoch'])} of {len(rows)}" + (" (selected)" if kept is not rows[-1] else "")
    console.print(
        f"{epoch}: test accuracy {kept['test_acc']:.2%}  macro-F1 {kept['test_macro_f1']:.4f}  "
        f"NLL {kept['test_nll']:.4f}  ECE {kept['test_ece']:.4f}  -> run folder {path}",
        soft_wrap=True,
    )
    if (Path(path) / "q.safetensors").is_file():
        console.print(f"Q written to {Path(path) / 'q.safetensors'}")
