"""``kdtool rerun``: a run again from its own folder, optionally with some options changed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdtool.cli import options as opt
from kdtool.cli.app import app, console
from kdtool.cli.runner import execute, plan_runs
from kdtool.cli.train import train_run

RunArg = Annotated[Path, typer.Argument(help="The run folder to run again (made by train-teacher or distill).",
                                        metavar="RUN", show_default=False)]  # fmt: skip
NewOut = Annotated[Path, typer.Option(help="Folder of the new run.", show_default=False)]
Set = Annotated[list[str] | None, typer.Option("--set", help="Change one option, KEY=VALUE with the config.json key "
                                               "(alpha=0.2, lls-terms=forward-ce,reverse-ce, device=cpu, "
                                               "log=tensorboard); repeat for several.", metavar="KEY=VALUE",
                                               show_default=False)]  # fmt: skip


@app.command("rerun")
def rerun(
    run: RunArg,
    out: NewOut,
    set_: Set = None,
    force: opt.Force = False,
    resume: opt.Resume = False,
) -> None:
    """Run a run again from its config.json: the same command (train-teacher or distill), the same resolved
    options and seed, the same teacher or Q artifact (refused if its file changed since: SHA-256).

    `--set` changes options, checked like the command's own flags: an unknown key, a bad value or an option
    the run does not use is an error. Options the run left to their default rule follow it again (e.g. the
    default --milestones move with --set epochs=20). On a CPU the same seed gives the same metrics.csv
    (timing columns aside).

    **Examples**

    ```
    kdtool rerun runs/lls --out runs/lls-again
    kdtool rerun runs/lls --out runs/lls-a02 --set alpha=0.2 --set epochs=20
    kdtool rerun runs/st-kd --out runs/st-kd-seed1 --set seed=1 --set log=tensorboard
    ```
    """
    from kdtool.config.rerun import parse_changes, rerun_config

    cfg, given = rerun_config(run, out, parse_changes(set_ or []))
    execute(plan_runs(cfg, given, force, resume, None, train_run), console)
