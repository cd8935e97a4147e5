"""``kdtool train-teacher``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from kdtool.cli import options as opt
from kdtool.cli.app import app, console
from kdtool.cli.runner import run_command

if TYPE_CHECKING:
    from kdtool.config.runconfig import TrainConfig


def train_teacher(ctx: typer.Context, values: dict[str, Any]) -> Any:
    """Train a teacher network with 1-hot, LS, LLS or a baseline method and write a run folder.

    The run folder holds config.json, metrics.csv, model.safetensors and, for LLS, q.safetensors.

    **Examples**

    ```
    kdtool train-teacher --smoothing lls --alpha 0.1 --epochs 10 --out runs/fmnist-lls
    kdtool train-teacher --dataset cifar100 --data-root ~/data --download --model resnet18 --smoothing ls \\
        --epsilon 0.1 --epochs 200 --schedule multistep --milestones 100,150 --out runs/c100-ls
    kdtool train-teacher --smoothing lls --lls-terms forward-ce,reverse-ce,target-entropy --out runs/no-pent
    kdtool train-teacher --smoothing lls --epochs 10 --out runs/fmnist-lls --resume    # after an interruption
    kdtool train-teacher --smoothing lls --log tensorboard --out runs/lls        # then: tensorboard --logdir runs
    kdtool train-teacher --imbalance-ratio 100 --val-fraction 0.1 --select best-val-balanced-acc \\
        --smoothing logit-adjust --tau 1 --out runs/lt-la
    kdtool train-teacher --imbalance-ratio 100 --smoothing lls --lls-correction prior --out runs/lt-lls-prior
    kdtool train-teacher --smoothing lls --log mlflow --mlflow-uri sqlite:///mlruns.db --out runs/lls2
    kdtool train-teacher --smoothing lls --epochs 10 --seeds 0,1,2 --out runs/fmnist-lls   # runs/fmnist-lls/seed0 ...
    kdtool train-teacher --smoothing focal --focal-gamma adaptive --out runs/flsd53
    kdtool train-teacher --smoothing tfkd-reg --tfkd-temperature 20 --tfkd-weight 0.1 --tfkd-multiplier 100 \\
        --out runs/tfkd
    kdtool train-teacher --smoothing prior --prior artifacts/fmnist-superclass.q.safetensors --epsilon 0.1 \\
        --out runs/cls
    kdtool train-teacher --smoothing lls --augment cutmix,randaugment --out runs/lls-cutmix
    kdtool train-teacher --dataset goemotions-ekman --model bilstm --smoothing lls --out runs/ge-lls
    kdtool train-teacher --dataset text:./my_data --model textcnn --word-vectors glove.6B.100d.txt --embed-dim 100 \\
        --out runs/mine
    torchrun --nproc-per-node 4 -m kdtool train-teacher --dataset cifar100 --data-root ~/data --out runs/c100
    ```
    """
    from kdtool.config.runconfig import TrainConfig

    return run_options(ctx, TrainConfig, values)


def run_options(ctx: typer.Context, config: type[TrainConfig], values: dict[str, Any]) -> Any:
    """Build the ``config`` of a training command from its option ``values``, then plan and run it."""
    cfg = config(**opt.config_values(values))
    return run_command(ctx, cfg, opt.given_options(ctx), values["force"], values["resume"], values["seeds"],
                       train_run)  # fmt: skip


app.command("train-teacher")(opt.TableCommand("train-teacher", train_teacher))


def train_run(cfg: TrainConfig, force: bool, resume: bool) -> None:
    """Train the run folder ``cfg.out`` with the pipeline of its kind (train-teacher or distill), then print
    its closing lines."""
    from kdtool.workflows import pipeline

    train = pipeline.distill if cfg.kind == "distill" else pipeline.train_teacher
    run, rows = train(cfg, force, console, resume=resume)
    pipeline.report_run(console, run.path, rows)
