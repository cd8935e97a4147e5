"""One resolver for "a run / a Q / a group of runs": every command says what a wrong path is."""

import pytest

from tests.conftest import TINY


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """A --seeds parent with two finished tiny LLS runs."""
    from kdtool.cli import main

    out = tmp_path_factory.mktemp("paths") / "lls"
    with pytest.raises(SystemExit) as done:
        main(["train-teacher", *TINY, "--seeds", "0,1", "--out", str(out)])
    assert done.value.code == 0
    return out


def test_a_file_of_a_run_names_its_folder(run_cli, seeds, tmp_path):
    weights = seeds / "seed0" / "model.safetensors"
    for command in (("evaluate", weights), ("export-q", weights, "--out", tmp_path / "q.safetensors"),
                    ("distill", "--teacher", weights, *TINY, "--out", tmp_path / "st")):  # fmt: skip
        code, _, stderr = run_cli(*command)
        assert code == 2 and f"is a file, not a run folder: pass the folder that holds it, {seeds / 'seed0'}" in stderr


def test_a_folder_of_seed_runs_says_to_pick_one(run_cli, seeds, tmp_path):
    for command in (("evaluate", seeds), ("export-q", seeds, "--out", tmp_path / "q.safetensors"),
                    ("distill", "--teacher", seeds, *TINY, "--out", tmp_path / "st")):  # fmt: skip
        code, _, stderr = run_cli(*command)
        assert code == 2 and "is a folder of runs (seed0, seed1), not a run" in stderr and "seed0" in stderr


def test_a_run_folder_stands_for_its_q(run_cli, seeds, tmp_path):
    code, stdout, stderr = run_cli("inspect-q", seeds / "seed0", "--top", "1")
    assert code == 0 and "dense Q, K=10" in stdout, stderr
    out = tmp_path / "st"
    code, _, stderr = run_cli("distill", "--substitute-q", seeds / "seed0", *TINY, "--out", out)
    assert code == 0, stderr
    code, _, stderr = run_cli("transfer-q", seeds / "seed0", "--top-n", "2", "--out", tmp_path / "t.q.safetensors")
    assert code == 0, stderr
    code, _, stderr = run_cli("inspect-q", seeds)
    assert code == 2 and "is a folder of runs, not a Q artifact" in stderr and "seed0/q.safetensors" in stderr


def test_an_interrupted_run_says_resume(run_cli, tmp_path, interrupt_at_epoch):
    interrupt_at_epoch(1)
    out = tmp_path / "run"
    assert run_cli("train-teacher", *TINY[:-4], "--epochs", "2", "--batch-size", "64", "--out", out)[0] == 130
    for command in (("evaluate", out), ("export-q", out, "--out", tmp_path / "q.safetensors")):
        code, _, stderr = run_cli(*command)
        assert code == 2 and "was interrupted after epoch 1" in stderr and "--resume" in stderr


def test_ctrl_c_before_the_first_epoch_prints_the_interrupted_line(run_cli, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("kdtool.workflows.pipeline.load_data", interrupted)
    code, _, stderr = run_cli("train-teacher", *TINY, "--out", tmp_path / "run")
    assert code == 130 and "interrupted: no epoch completed" in stderr and not (tmp_path / "run").exists()
