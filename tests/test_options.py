"""The option table (kdtool.config.options) drives the training commands, kdtool.fit and rerun --set."""

import dataclasses

import pytest
import torch

from kdtool.config import options as table
from kdtool.config.runconfig import DistillConfig, TrainConfig
from kdtool.errors import KdtoolError
from tests.conftest import TINY


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


def test_an_option_added_to_the_table_is_in_both_commands_help(run_cli, monkeypatch):
    dummy = table.Option("dummy_knob", int, 7, "Test knob.", table.OPTIM)
    for command in ("train-teacher", "distill"):
        assert "--dummy-knob" not in run_cli(command, "--help")[1]
    monkeypatch.setattr(table, "OPTIONS", (*table.OPTIONS, dummy))
    for command in ("train-teacher", "distill"):
        code, stdout, _ = run_cli(command, "--help")
        assert code == 0 and "--dummy-knob" in stdout and "Test knob." in stdout, stdout


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
    # kdtool.fit and rerun start from the dataclass defaults, the command line from the table's: they agree
    fields = {f.name: f for f in dataclasses.fields(config)}
    for option in table.command_options(config.commands[-1]):
        if option.config and option.name != "out":  # a run folder per command
            field = fields[option.name]
            default = field.default_factory() if field.default is dataclasses.MISSING else field.default
            assert option.to_config(option.default) == default, option.name
