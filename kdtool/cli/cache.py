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
    device: opt.Device = "auto",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing cache kdtool wrote.")] = False,
) -> None:
    """Run a teacher over V seeded augmented views of every training sample and store its logits.

    For each view and sample the cache keeps the augmentation's choices (crop offsets, flip, ...) and the
    teacher's top-k logits with their classes, plus one logit standing for the other classes (format
    kdtool.cache/1, docs/distill.md). `distill --teacher-cache FILE` then replays view e mod V in epoch e with
    exactly those choices and trains on the cached logits without building the teacher. The data options
    (--augment, --limit-train and its --seed) must be the student's; mixup and cutmix are the student's
    own (they mix the cached logits as they mix the images). Text data has one view, unaugmented.

    **Examples**

    ```
    kdtool cache-teacher runs/fmnist-resnet --views 15 --out caches/fmnist-resnet.cache.safetensors
    kdtool cache-teacher runs/c100-resnet --views 20 --top-k 10 --out caches/c100.cache.safetensors
    kdtool distill --teacher-cache caches/fmnist-resnet.cache.safetensors --kd-loss dkd --out runs/st-dkd
    ```
    """
    from kdtool.config.runconfig import training_defaults
    from kdtool.distill.cachebuild import build_teacher_cache
    from kdtool.runs.folder import RunDir

    given = opt.given_options(ctx)
    check_output_file(out, force)
    run_dir = RunDir.open(run)
    if "augment" in given and run_dir.config().get("dataset_info", {}).get("kind") == "text":
        raise KdtoolError(f"{given['augment']} does not apply here: {run_dir.path} is a text run, and text has "
                          f"no augmentation; remove it")  # fmt: skip
    # the student's default augmentation is its dataset family's, so the cache's is too
    chosen = "none" if no_augment else augment or training_defaults(run_dir.config()["dataset"]).augment

    def progress(done: int, total: int) -> None:
        console.print(f"view {done} of {total} done")

    cache = build_teacher_cache(run_dir, views, top_k, chosen, limit_train, seed, batch_size, device, progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    cache.save(out)
    form = "exact" if cache.top_k == cache.num_classes else f"top-{cache.top_k} of {cache.num_classes} classes"
    views = f"{cache.views} view{'s' if cache.views != 1 else ''}"
    console.print(f"wrote {out}: {views} of {cache.num_samples} samples, {form}, augmentation "
                  f"{cache.data_options['augment']}, {out.stat().st_size / 1e6:.1f} MB")  # fmt: skip
