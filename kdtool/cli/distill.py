"""``kdtool distill``."""

from __future__ import annotations

from typing import Any

import typer

from kdtool.cli import options as opt
from kdtool.cli.app import app
from kdtool.cli.train import run_options


def distill(ctx: typer.Context, values: dict[str, Any]) -> Any:
    """Train a student from a teacher run or its cache (KD, DKD, DIST, WTTM, NKD) or from a Q artifact alone (LLS-ST).

    Give exactly one of --teacher, --teacher-cache and --substitute-q. A teacher cache (kdtool cache-teacher)
    replays, in epoch e, view e mod V of every sample with exactly the augmentation it was cached with, and its
    logits stand for the teacher's: no teacher network is built. The loss is
    β·CE(e_y, p) + (1-β)·T²·KL(teacher ‖ student) at temperature T, KL summed over classes then averaged over
    the batch. LLS-ST's teacher output for a sample of class y is (1-α)e_y + α·softmax(Q[y]); no teacher
    network is run. The run folder is the same as train-teacher's (plus the Q used, for LLS-ST).

    With a teacher, --kd-loss dkd trains with β·CE + w·T²·(α·TCKD + β_dkd·NCKD), w rising from 0 to 1 over
    --dkd-warmup-epochs, --kd-loss dist with β·CE + T²·(β_dist·inter + γ·intra) relation terms, wttm and nkd
    as their authors' code. Their defaults train kdtool's default student (chosen on validation); --kd-preset
    sets a paper's (docs/distill.md). The header line shows the values in use.

    **Examples**

    ```
    kdtool distill --teacher runs/fmnist-lls --student lenet5 --beta 0 --temperature 1 --out runs/st-kd
    kdtool distill --substitute-q artifacts/fmnist-lenet5-lls.q.safetensors --alpha 0.1 --student lenet5 \\
        --out runs/st-llsst
    kdtool distill --substitute-q artifacts/fmnist-lenet5-lls.q.safetensors \\
        --classes "T-shirt/top,Pullover,Coat,Shirt" --out runs/st-tops
    kdtool distill --teacher runs/fmnist-lls --sample-fraction 0.5 --seed 1 --out runs/st-half
    kdtool distill --teacher runs/fmnist-lls --kd-loss dkd --dkd-beta 2 --out runs/st-dkd
    kdtool distill --teacher runs/fmnist-lls --kd-preset kd+ls --out runs/st-kd-ls
    kdtool distill --teacher runs/lt-teacher --imbalance-ratio 100 --kd-balance logit-adjust --out runs/st-bal
    kdtool distill --substitute-q artifacts/fmnist-lenet5-lls.q.safetensors --seeds 0,1,2 --out runs/st  # runs/st/seed0
    ```
    """
    from kdtool.config.runconfig import DistillConfig

    return run_options(ctx, DistillConfig, values)


app.command("distill")(opt.TableCommand("distill", distill))
