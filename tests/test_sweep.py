import csv

import pytest

from kdtool.errors import KdtoolError
from kdtool.runs.sweep import expand, parse_grid

FLAGS = {"--lr": True, "--smoothing": True, "--milestones": True, "--no-augment": False, "--seed": True}


def test_grid_expansion_names_and_prior_shorthand():
    grid, fixed = parse_grid(
        ["--lr", "0.1,0.01", "--smoothing", "ls,prior:a/fm.q.safetensors", "--milestones", "2,3", "--no-augment"],
        FLAGS,
    )
    assert grid == {"--lr": ["0.1", "0.01"], "--smoothing": ["ls", "prior:a/fm.q.safetensors"],
                    "--milestones": ["2,3"]}  # fmt: skip
    assert fixed == ["--no-augment"]
    runs = expand(grid, fixed)
    assert [r.name for r in runs] == ["lr-0.1_smoothing-ls", "lr-0.1_smoothing-prior-fm", "lr-0.01_smoothing-ls",
                                      "lr-0.01_smoothing-prior-fm"]  # fmt: skip
    assert runs[1].args == ["--lr", "0.1", "--smoothing", "prior", "--prior", "a/fm.q.safetensors",
                            "--milestones", "2,3", "--no-augment"]  # fmt: skip
    assert runs[1].values == {"lr": "0.1", "smoothing": "prior:a/fm.q.safetensors"}


def test_repeated_flag_sweeps_a_list_valued_option():
    grid, _ = parse_grid(["--milestones", "2,3", "--milestones", "4"], FLAGS)
    assert [r.name for r in expand(grid, [])] == ["milestones-2-3", "milestones-4"]


def test_grid_errors():
    with pytest.raises(KdtoolError, match="unknown train-teacher option"):
        parse_grid(["--bogus", "1"], FLAGS)
    with pytest.raises(KdtoolError, match="needs a value"):
        parse_grid(["--lr"], FLAGS)


def test_sweep_runs_grid_skips_finished_and_summarises(run_cli, tmp_path):
    args = ("sweep", "--smoothing", "onehot,ls", "--seeds", "0,1", "--limit-train", "128", "--limit-test", "64",
            "--epochs", "1", "--batch-size", "64", "--schedule", "constant", "--out", tmp_path)  # fmt: skip
    code, stdout, stderr = run_cli(*args)
    assert code == 0, stderr
    folders = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert folders == ["smoothing-ls_seed-0", "smoothing-ls_seed-1", "smoothing-onehot_seed-0",
                       "smoothing-onehot_seed-1"]  # fmt: skip
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    assert len(rows) == 4 and {r["smoothing"] for r in rows} == {"onehot", "ls"}
    assert {"selected_epoch", "selected_test_acc", "last_epoch", "last_test_acc", "last_test_macro_f1"} <= set(rows[0])
    before = (tmp_path / "smoothing-ls_seed-0" / "model.safetensors").stat().st_mtime_ns
    code, stdout, _ = run_cli(*args)
    assert code == 0 and stdout.count("skipped") == 4
    assert (tmp_path / "smoothing-ls_seed-0" / "model.safetensors").stat().st_mtime_ns == before
    code, _, stderr = run_cli(*args[:-2], "--lr", "0.2", "--out", tmp_path)  # finished runs, other options
    assert code == 2 and "was trained with --lr 0.05, now 0.2" in stderr


def test_sweep_bad_option_exits_2(run_cli, tmp_path):
    code, _, stderr = run_cli("sweep", "--lr", "0.1,0.2", "--frobnicate", "3", "--out", tmp_path / "s")
    assert code == 2 and "unknown train-teacher option '--frobnicate'" in stderr
    assert not (tmp_path / "s").exists()
