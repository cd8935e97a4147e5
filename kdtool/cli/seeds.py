"""``--seeds``: one run per seed in ``OUT/seed<N>``, trained one after the other.

Reported numbers are means over seeds, so a multi-seed run is a single command. Re-running it
continues where it stopped: a finished seed (its folder holds ``model.safetensors``) is skipped,
an interrupted one is resumed from its checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from kdtool.checkpoint import checkpoint_path
from kdtool.cli.app import parse_int_list
from kdtool.config import TrainConfig
from kdtool.errors import KdtoolError
from kdtool.runs import CONFIG, MODEL, check_output_dir

# train_one(cfg, force, resume): train one run folder cfg.out
TrainOne = Callable[[TrainConfig, bool, bool], None]


def parse_seeds(value: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``: at least one seed, each non-negative and given once."""
    seeds = parse_int_list(value, "--seeds")
    if not seeds:
        raise KdtoolError("--seeds needs at least one seed, e.g. --seeds 0,1,2")
    if any(s < 0 for s in seeds):
        raise KdtoolError(f"--seeds must be non-negative, got {value!r}")
    if len(set(seeds)) != len(seeds):
        raise KdtoolError(f"--seeds lists a seed twice: {value!r}")
    return seeds


def seed_folder(out: str | Path, seed: int) -> Path:
    return Path(out) / f"seed{seed}"


@dataclass(frozen=True)
class SeedRun:
    """What to do for one seed: ``skip`` (finished), ``resume`` (interrupted) or ``train``.

    ``replace``: training must replace an existing folder (``--force``, or an interrupted seed restarted).
    """

    seed: int
    cfg: TrainConfig
    action: str
    replace: bool = False


def plan_seeds(cfg: TrainConfig, seeds: list[int], force: bool) -> list[SeedRun]:
    """Decide every seed's action and check every folder before anything is trained.

    With ``force`` every seed is trained afresh. Otherwise a folder holding weights is finished;
    one with a checkpoint is resumed; one that died before its first checkpoint is restarted.
    """
    out = Path(cfg.out)
    if (out / CONFIG).is_file():
        raise KdtoolError(f"--out {out} is itself a run folder; --seeds puts one run per seed under --out")
    plan = []
    for seed in seeds:
        folder = seed_folder(out, seed)
        one = dataclasses.replace(cfg, seed=seed, out=str(folder))
        if not force and (folder / MODEL).is_file():
            plan.append(SeedRun(seed, one, "skip"))
        elif not force and checkpoint_path(folder).is_file():
            plan.append(SeedRun(seed, one, "resume"))
        else:
            # an interrupted seed is restarted as --force would; a folder that is not a kdtool run is still refused
            replace = force or (folder / CONFIG).is_file()
            check_output_dir(folder, replace)
            plan.append(SeedRun(seed, one, "train", replace))
    return plan


def for_each_seed(
    cfg: TrainConfig,
    seeds: str | None,
    force: bool,
    resume: bool,
    train_one: TrainOne,
    console: Console,
) -> None:
    """Train ``cfg`` once (``seeds`` None) or once per seed of the comma list ``seeds``."""
    if seeds is None:
        train_one(cfg, force, resume)
        return
    if force and resume:
        raise KdtoolError("--resume continues runs and --force replaces them: pass only one of them")
    plan = plan_seeds(cfg, parse_seeds(seeds), force)
    for index, run in enumerate(plan, 1):
        where = f"[{index}/{len(plan)}] seed {run.seed}"
        if run.action == "skip":
            console.print(f"{where}: finished earlier, skipped (--force retrains it): {run.cfg.out}")
            continue
        console.rule(f"{where}{' (resuming)' if run.action == 'resume' else ''} -> {run.cfg.out}")
        train_one(run.cfg, run.replace, run.action == "resume")
