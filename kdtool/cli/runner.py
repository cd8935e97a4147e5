"""Running the training commands: one run, one run per seed (``--seeds``), or a sweep's grid point.

Every run folder goes through one decision (:func:`kdtool.runs.folder.plan_run`), taken for all folders
before anything is trained: train afresh, replace a kdtool run (``--force``), resume an interrupted
one, or skip a finished one of the same options (``--seeds``, ``sweep``); a finished folder of other
options is refused, naming the first option that differs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from kdtool.cli.app import console, parse_int_list
from kdtool.errors import KdtoolError, RunDiverged

if TYPE_CHECKING:  # the CLI imports torch-backed modules only when a command runs
    from kdtool.config.runconfig import TrainConfig
    from kdtool.runs.folder import RunPlan

# train_one(cfg, force, resume): train the run folder cfg.out
TrainOne = Callable[["TrainConfig", bool, bool], None]
# ctx.meta key: set by `sweep` to plan a train-teacher command line without running it
PLAN_ONLY = "kdtool.plan_only"


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
class PlannedRun:
    """One run folder and what to do with it (see :class:`kdtool.runs.folder.RunPlan`)."""

    cfg: TrainConfig
    plan: RunPlan
    train_one: TrainOne
    label: str = ""


def plan_runs(
    cfg: TrainConfig,
    given: Mapping[str, str],
    force: bool,
    resume: bool,
    seeds: str | None,
    train_one: TrainOne,
    reuse: bool = False,
) -> list[PlannedRun]:
    """Resolve ``cfg``, refuse options that do not apply, and plan every run folder before any work.

    ``seeds`` (a comma list) gives one run per seed in ``OUT/seed<N>``; ``reuse`` (set by ``sweep``)
    skips or resumes a run folder of the same options as ``--seeds`` does.
    """
    from kdtool.runs.folder import plan_run

    cfg.resolve()
    cfg.check_given(given)
    if seeds is None:
        plan = plan_run(cfg.out, cfg.result_options(), force, resume, reuse, cfg.result_defaults())
        return [PlannedRun(cfg, plan, train_one)]
    if "seed" in given:
        raise KdtoolError("--seed and --seeds contradict each other: --seeds gives every run its seed")
    if force and resume:
        raise KdtoolError("--resume continues runs and --force replaces them: pass only one of them")
    out = Path(cfg.out)
    if (out / "config.json").is_file():
        raise KdtoolError(f"--out {out} is itself a run folder; --seeds puts one run per seed under --out")
    planned = []
    for seed in parse_seeds(seeds):
        one = dataclasses.replace(cfg, seed=seed, out=str(seed_folder(out, seed)))
        plan = plan_run(one.out, one.result_options(), force, False, True, one.result_defaults())
        if resume and plan.action == "train":
            raise KdtoolError(f"--resume continues started runs, but {one.out} has not been started: drop --resume "
                              f"to train new seeds")  # fmt: skip
        planned.append(PlannedRun(one, plan, train_one, f"seed {seed}"))
    return planned


def execute(planned: list[PlannedRun], console: Console, after_each: Callable[[], None] | None = None) -> None:
    """Train, resume or skip each planned run, one after the other, calling ``after_each`` after each run trained
    (or diverged).

    A run that diverges does not stop the others: they go on, and the diverged ones are listed at the end
    (:class:`~kdtool.errors.RunDiverged`, exit code 3). A lone run's divergence propagates as it is.
    """
    several = len(planned) > 1 or bool(planned[0].label)
    diverged = []
    for index, run in enumerate(planned, 1):
        where = f"[{index}/{len(planned)}] {run.label or run.cfg.out}"
        if run.plan.action == "skip":
            console.print(f"{where}: finished earlier, skipped (same options; --force retrains it): {run.cfg.out}"
                          if several else _complete(run.cfg), soft_wrap=True)  # fmt: skip
            continue
        if run.plan.action == "diverged":
            console.print(f"{where}: diverged earlier, skipped (--force retrains it): {run.cfg.out}", soft_wrap=True)
            diverged.append(run)
            continue
        if several:
            console.rule(f"{where}{' (resuming)' if run.plan.action == 'resume' else ''} -> {run.cfg.out}")
        try:
            run.train_one(run.cfg, run.plan.replace, run.plan.action == "resume")
        except RunDiverged as exc:
            if not several:
                raise
            console.print(str(exc), soft_wrap=True)
            diverged.append(run)
        if after_each is not None:
            after_each()
    if diverged:
        listed = ", ".join(f"{run.label or 'run'} ({run.cfg.out})" for run in diverged)
        raise RunDiverged(f"{len(diverged)} of {len(planned)} runs diverged: {listed}")


def _complete(cfg: TrainConfig) -> str:
    """The line of a lone finished run asked to ``--resume``."""
    from kdtool.runs.folder import read_config

    done = (read_config(cfg.out) or {}).get("epochs_run", cfg.epochs)
    return f"{cfg.out}: already complete ({done} of {cfg.epochs} epochs), nothing to resume; --force retrains it"


def run_command(
    ctx: typer.Context,
    cfg: TrainConfig,
    given: Mapping[str, str],
    force: bool,
    resume: bool,
    seeds: str | None,
    train_one: TrainOne,
) -> list[PlannedRun] | None:
    """The body every training command shares: plan, then run (or, for ``sweep``, return the plan)."""
    plan_only = bool(ctx.meta.get(PLAN_ONLY))
    planned = plan_runs(cfg, given, force, resume, seeds, train_one, reuse=plan_only)
    if plan_only:
        return planned
    execute(planned, console)
    return None
