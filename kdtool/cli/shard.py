"""``kdtool shard``: any kdtool image dataset as WebDataset tar shards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdtool.cli import options as opt
from kdtool.cli.app import app, console
from kdtool.errors import KdtoolError

Source = Annotated[str, typer.Argument(help="The dataset to shard: imagefolder:PATH, fashion-mnist (embedded), "
                                       "mnist, cifar10, cifar100, svhn (with --data-root).",
                                       show_default=False)]  # fmt: skip
ShardOut = Annotated[Path, typer.Option(help="Folder to write the shards and classes.txt into (new or empty).",
                                        show_default=False)]  # fmt: skip
ShardSize = Annotated[int, typer.Option(help="Samples per shard (the last shard of a split holds the rest).")]
ShardForce = Annotated[bool, typer.Option("--force", help="Replace the shards and classes.txt kdtool shard wrote "
                                          "in --out (anything else there is refused).")]  # fmt: skip


@app.command("shard")
def shard(
    src: Source,
    out: ShardOut = Path("shards"),
    shard_size: ShardSize = 1000,
    data_root: opt.DataRoot = None,
    download: opt.Download = False,
    seed: Annotated[
        int,
        typer.Option(help="Seed of the random order the training samples are written in (recorded in shards.json)."),
    ] = 0,
    force: ShardForce = False,
) -> None:
    """Write a dataset as WebDataset tar shards for `--dataset wds:` (training split: train-NNNNNN.tar,
    test split: val-NNNNNN.tar, class names: classes.txt; the source's channels, size and normalisation,
    which a run of the shards reads them with, in shards.json).

    A sample is KEY.jpg or KEY.png (an imagefolder's files as they are; decoded datasets as lossless PNG)
    plus KEY.cls, its class index. The training samples are written in a seeded random order (never class
    order, which no shuffle buffer could mix), recorded in shards.json. Each shard is written to a temporary
    file and renamed when complete.

    **Examples**

    ```
    kdtool shard imagefolder:~/data/tiny-imagenet --out ~/shards/tin --shard-size 5000
    kdtool train-teacher --dataset "wds:$HOME/shards/tin/train-{000000..000019}.tar" --image-size 64 --out runs/tin
    kdtool shard fashion-mnist --out shards/fmnist --shard-size 10000
    kdtool shard cifar10 --data-root ~/data --download --out shards/c10
    ```
    """
    from kdtool.data.registry import load_dataset
    from kdtool.data.shards import check_shard_folder, is_wds, use_line, write_shards
    from kdtool.data.text import is_text_dataset

    if shard_size <= 0:
        raise KdtoolError(f"--shard-size must be a positive number of samples, got {shard_size}")
    if is_text_dataset(src) or is_wds(src):
        kind = "text" if is_text_dataset(src) else "shards already"
        raise KdtoolError(f"kdtool shard writes image datasets; {src} is {kind}")
    out = out.expanduser()
    check_shard_folder(out, force)
    dataset = load_dataset(src, opt.as_text(data_root), download, stream=src.startswith("imagefolder:"))
    done = write_shards(dataset, out, shard_size, seed)
    console.print(f"{done.num_train} training samples in {len(done.train)} shards, {done.num_val} evaluation "
                  f"samples in {len(done.val)}, {len(dataset.info.class_names)} classes in {done.classes}",
                  soft_wrap=True)  # fmt: skip
    console.print(use_line(done, dataset), soft_wrap=True)
