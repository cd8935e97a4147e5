"""``kdtool cache-teacher``: run a teacher once over augmented views of its training set, for students to replay."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdtool.cli import options as opt
from kdtool.cli.app import app, console
from kdtool.errors import KdtoolError
from kdtool.fileio import check_output_file

RunArgument = Annotated[Path, typer.Argument(help="The teacher: a run folder made by train-teacher or distill.",
                                             metavar="RUN", show_default=False)]  # fmt: skip
OutFile = Annotated[Path, typer.Option("--out", help="Teacher cache to write (.safetensors).", show_default=False)]
Views = Annotated[int | None, typer.Option(help="Augmented views of every sample; a student's epoch e replays view "
                                           "e mod V (default: 10, or 1 without augmentation).",
                                           show_default=False)]  # fmt: skip
TopK = Annotated[int | None, typer.Option(help="Logits kept per sample and view, plus one for all other classes "
                                          "(default: every class, exact).", show_default=False)]  # fmt: skip
BatchSize = Annotated[int, typer.Option(help="Images per forward pass of the teacher.")]
CacheAmp = Annotated[str, typer.Option("--amp", help="Mixed precision of the teacher's passes: none (float32 "
                                       "logits), bf16 or fp16 (CUDA only), faster on a GPU; the cache then holds the "
                                       "logits of the teacher under that autocast.")]  # fmt: skip
CacheDtype = Annotated[str, typer.Option(help="Storage type of the logits: float16, bfloat16 or float32. A student "
                                         "replays the teacher's logits rounded to it.")]  # fmt: skip


@app.command("cache-teacher")
def cache_teacher(
    ctx: typer.Context,
    run: RunArgument,
    out: OutFile,
    views: Views = None,
    top_k: TopK = None,
    augment: opt.Augment = None,
    no_augment: opt.NoAugment = False,
    limit_train: opt.LimitTrain = None,
    seed: Annotated[int, typer.Option(help="Seed of the views' augmentation and of --limit-train's choice.")] = 0,
    batch_size: BatchSize = 1024,
    cache_dtype: CacheDtype = "float16",
    loader: opt.Loader = "memory",
    workers: opt.Workers = None,
    device: opt.Device = "auto",
    amp: CacheAmp = "none",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing cache kdtool wrote.")] = False,
) -> None:
    """Run a teacher over V seeded augmented views of every training sample and store its logits.

    For each view and sample the cache keeps the augmentation's choices (crop offsets, flip, ...) and the
    teacher's logits (all of them, or the top-k with their classes, the ground-truth class's and one for the
    other classes), as --cache-dtype (format kdtool.cache/2, docs/distill.md). `distill --teacher-cache FILE`
    then replays view e mod V in epoch e with exactly those choices and trains on the cached logits without
    building the teacher, reading the file per batch where it exceeds --memory-budget. The data options
    (--augment, --limit-train and its --seed, --loader) must be the student's; mixup and cutmix are the
    student's own (they mix the cached logits as they mix the images). Streamed data (imagefolder: with
    --loader stream, wds:) store each sample's random-resized crop box and flip. Text data has one view,
    unaugmented.

    **Examples**

    ```
    kdtool cache-teacher runs/fmnist-resnet --augment standard --views 15 --out caches/fmnist-resnet.cache.safetensors
    kdtool cache-teacher runs/c100-resnet --views 20 --top-k 10 --out caches/c100.cache.safetensors
    kdtool cache-teacher runs/in-resnet --loader stream --workers 8 --out caches/in.cache.safetensors
    kdtool distill --teacher-cache caches/fmnist-resnet.cache.safetensors --augment standard --kd-loss dkd \\
        --out runs/st-dkd
    ```
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    from kdtool.config.runconfig import training_defaults
    from kdtool.distill.cachebuild import CacheRequest, build_teacher_cache
    from kdtool.distributed import is_main_process
    from kdtool.runs.folder import RunDir

    given = opt.given_options(ctx)
    check_output_file(out, force)
    run_dir = RunDir.open(run)
    config = run_dir.config()
    if "augment" in given and config.get("dataset_info", {}).get("kind") == "text":
        raise KdtoolError(f"{given['augment']} does not apply here: {run_dir.path} is a text run, and text has "
                          f"no augmentation; remove it")  # fmt: skip
    if ("loader" in given or "workers" in given) and not config["dataset"].startswith(("imagefolder:", "wds:")):
        flag = "--loader" if "loader" in given else "--workers"
        raise KdtoolError(f"{flag} does not apply here: {run_dir.path} was trained on {config['dataset']}, which is "
                          f"always in memory; remove it")  # fmt: skip
    # the student's default augmentation is its dataset family's, so the cache's is too
    chosen = "none" if no_augment else augment or training_defaults(config["dataset"]).augment
    request = CacheRequest(views, top_k, chosen, limit_train, seed, batch_size, device, cache_dtype, loader, workers,
                           amp)  # fmt: skip
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), "ETA",
               TimeRemainingColumn())  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("sample-views", total=None)
        cache = build_teacher_cache(
            run_dir, str(out), request, lambda done, total: bar.update(task, completed=done, total=total)
        )
    if not is_main_process():  # torchrun: every rank wrote its share, rank 0 reports
        return
    form = "exact" if cache.top_k == cache.num_classes else f"top-{cache.top_k} of {cache.num_classes} classes"
    views = f"{cache.views} view{'s' if cache.views != 1 else ''}"
    console.print(f"wrote {out}: {views} of {cache.num_samples} samples, {form}, {cache.cache_dtype}, "
                  f"augmentation {cache.data_options['augment']} ({cache.data_options['loader']} data path), "
                  f"{out.stat().st_size / 1e6:.1f} MB")  # fmt: skip
