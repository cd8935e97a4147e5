"""The option table (kdtool.config.options) drives the training commands, kdtool.fit and rerun --set."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kdtool.config import options as table
from kdtool.config.runconfig import DistillConfig, TrainConfig
from kdtool.errors import KdtoolError
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def points(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, 4, generator=torch.Generator().manual_seed(n)), torch.arange(n) % 2


def test_fit_refuses_a_mistyped_option_with_a_suggestion(tmp_path):
    import kdtool

    with pytest.raises(KdtoolError) as refused:
        kdtool.fit(torch.nn.Linear(4, 2), points(8), points(4), out=tmp_path / "x", alfa=0.2)
    assert str(refused.value) == "kdtool.fit: no train-teacher option 'alfa'; did you mean alpha?"
    assert not (tmp_path / "x").exists()


def test_fit_refuses_an_option_its_method_does_not_use_with_the_cli_message(run_cli, tmp_path):
    import kdtool

    code, _, stderr = run_cli("train-teacher", "--smoothing", "ls", "--alpha", "0.2", *TINY, "--out", tmp_path / "c")
    assert code == 2 and stderr.startswith("error: --alpha does not apply to this run (--smoothing ls)"), stderr
    with pytest.raises(KdtoolError) as refused:
        kdtool.fit(torch.nn.Linear(4, 2), points(8), points(4), method="ls", out=tmp_path / "x", alpha=0.2)
    assert f"error: {refused.value}" == stderr.strip()
    assert not (tmp_path / "x").exists() and not (tmp_path / "c").exists()


@pytest.mark.parametrize("config", [TrainConfig, DistillConfig])
def test_every_config_field_is_an_option_of_the_table(config):
    # an option declared in the old style (a field without its table entry) is caught here
    assert sorted(f.name for f in dataclasses.fields(config)) == sorted(table.config_options(config.commands))


def test_distill_takes_its_student_as_the_model_and_its_own_alpha():
    options = {o.name: o for o in table.command_options(table.DISTILL)}
    assert options["model"].flag == "--student" and options["alpha"].default is None
    assert [o.panel for o in table.command_options(table.DISTILL)][:2] == [table.SOURCE, table.SOURCE]
    assert "smoothing" not in options and "epsilon" not in options


def test_rerun_set_parses_a_value_as_the_option_table_types_it(run_cli, tmp_path):
    from kdtool.config.rerun import parse_value

    cfg = TrainConfig()
    assert parse_value(cfg, "milestones", "5,7") == [5, 7] and parse_value(cfg, "prior", "a/q") == "a/q"
    with pytest.raises(KdtoolError, match=r"--milestones takes comma-separated integers, got '5,x'"):
        parse_value(cfg, "milestones", "5,x")
    with pytest.raises(KdtoolError, match=r"--set alfa: no train-teacher option; did you mean alpha\?"):
        parse_value(cfg, "alfa", "0.2")


@pytest.mark.parametrize("config", [TrainConfig, DistillConfig])
def test_the_command_line_defaults_are_the_configs(config):
    # kdtool.fit and rerun start from the dataclass defaults, the command line from the table's: a field the class
    # declares itself must not give a command's option another default (the run folder too is the command's)
    fields = {f.name: f for f in dataclasses.fields(config)}
    for option in table.command_options(config.commands[-1]):
        if option.config:
            field = fields[option.name]
            default = field.default_factory() if field.default is dataclasses.MISSING else field.default
            assert option.to_config(option.default) == default, option.name


# The configs are made from the table as kdtool.config.runconfig is imported: a fresh interpreter adds one entry to
# the table before that, and edits nothing else; it prints what each use of options sees.
ONE_ENTRY = """
import contextlib, dataclasses, io, json, sys
from pathlib import Path

from kdtool.config import options as table

table.OPTIONS += (table.Option("dummy_knob", int, 7, "Test knob.", table.OPTIM, applies=table.method("ls")),)

import torch
import kdtool
from kdtool.cli import main_args
from kdtool.config.rerun import rerun_config
from kdtool.config.runconfig import DistillConfig, TrainConfig
from kdtool.errors import KdtoolError

root, tiny = Path(sys.argv[1]), sys.argv[2:]
seen = {"fields": [str(f.type) + " = " + repr(f.default) for config in (TrainConfig, DistillConfig)
                   for f in dataclasses.fields(config) if f.name == "dummy_knob"], "help": [], "refused": []}
for command in ("train-teacher", "distill"):
    with contextlib.redirect_stdout(io.StringIO()) as text:
        main_args([command, "--help"])
    words = " ".join(text.getvalue().replace("│", " ").split())  # its row, wrapped over lines
    start = words.find("--dummy-knob")
    seen["help"].append(words[start : words.find("]", start) + 1] if start >= 0 else "")
x, y = torch.randn(8, 4), torch.arange(8) % 2
def fit(out, **options):
    return kdtool.fit(torch.nn.Linear(4, 2), (x, y), (x, y), epochs=1, out=root / out, quiet=True, device="cpu",
                      **options)
run, _ = fit("ls", method="ls", dummy_knob=3)
seen["recorded"] = json.loads((run.path / "config.json").read_text())["dummy_knob"]
seen["rerun"] = [rerun_config(run.path, root / "again", changes)[0].dummy_knob for changes in ({}, {"dummy_knob": "9"})]
for call in (lambda: main_args(["train-teacher", "--dummy-knob", "3", *tiny, "--out", str(root / "cli")]),
             lambda: fit("lls", method="lls", dummy_knob=3), lambda: fit("typo", dummy_knop=3),
             lambda: rerun_config(run.path, root / "again", {"dummy_knob": "x"})):
    try:
        call()
    except KdtoolError as exc:
        seen["refused"].append(str(exc))
seen["written"] = sorted(p.name for p in root.iterdir())
print(json.dumps(seen))
"""


def test_an_option_is_one_entry_in_the_table_plus_its_use(tmp_path):
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", ONE_ENTRY, str(tmp_path), *TINY], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["fields"] == ["<class 'int'> = 7"] * 2  # a field of both configs, typed and defaulted by its entry
    assert seen["help"] == ["--dummy-knob N Test knob. [default: 7]"] * 2, seen["help"]
    assert seen["recorded"] == 3 and seen["rerun"] == [3, 9]  # config.json records it, rerun reads and --set sets it
    refused = "--dummy-knob does not apply to this run (--smoothing lls): it is used by --smoothing ls only; remove it"
    assert seen["refused"] == [refused, refused, "kdtool.fit: no train-teacher option 'dummy_knop'; did you mean "
                               "dummy_knob?", "--set dummy_knob=x: dummy_knob takes an integer"]  # fmt: skip
    assert seen["written"] == ["ls"]  # the refused runs wrote nothing
