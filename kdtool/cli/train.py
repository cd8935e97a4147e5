"""``kdtool train-teacher``."""

from __future__ import annotations

from pathlib import Path

from kdtool.cli import options as opt
from kdtool.cli.app import app, console


@app.command("train-teacher")
def train_teacher(
    out: opt.Out = Path("runs/teacher"),
    dataset: opt.Dataset = "fashion-mnist",
    data_root: opt.DataRoot = None,
    download: opt.Download = False,
    image_size: opt.ImageSize = 64,
    limit_train: opt.LimitTrain = None,
    limit_test: opt.LimitTest = None,
    augment: opt.Augment = True,
    model: opt.Model = "lenet5",
    smoothing: opt.Smoothing = "lls",
    epsilon: opt.Epsilon = 0.1,
    alpha: opt.Alpha = 0.1,
    lls_terms: opt.LlsTerms = "all",
    q_weight_decay: opt.QWeightDecay = None,
    epochs: opt.Epochs = 10,
    batch_size: opt.BatchSize = 128,
    lr: opt.Lr = 0.1,
    weight_decay: opt.WeightDecay = 5e-4,
    warmup_epochs: opt.WarmupEpochs = None,
    milestones: opt.Milestones = "",
    gamma: opt.Gamma = 0.1,
    seed: opt.Seed = 0,
    device: opt.Device = "auto",
    force: opt.Force = False,
) -> None:
    """Train a teacher network with 1-hot, LS or LLS targets and write a run folder.

    The run folder holds config.json, metrics.csv, model.safetensors and, for LLS, q.safetensors.

    **Examples**

    ```
    kdtool train-teacher --smoothing lls --alpha 0.1 --epochs 10 --out runs/fmnist-lls
    kdtool train-teacher --dataset cifar100 --data-root ~/data --download --model resnet18 --smoothing ls \\
        --epsilon 0.1 --epochs 200 --milestones 100,150 --out runs/c100-ls
    kdtool train-teacher --smoothing lls --lls-terms forward-ce,reverse-ce,target-entropy --out runs/no-pent
    ```
    """
    from kdtool.pipeline import train_teacher as run_train_teacher

    options = dict(locals())
    force = options.pop("force")
    run, rows = run_train_teacher(opt.config_from(options), force, console)
    report_run(run.path, rows[-1])


def report_run(path: Path, last: dict[str, float]) -> None:
    """The closing lines every training command prints."""
    console.print(
        f"test accuracy {last['test_acc']:.2%}  NLL {last['test_nll']:.4f}  ECE {last['test_ece']:.4f}"
        f"  -> run folder {path}"
    )
    if (Path(path) / "q.safetensors").is_file():
        console.print(f"Q written to {Path(path) / 'q.safetensors'}")
