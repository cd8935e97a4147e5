"""``kdtool batch``: kdtool command lines one after the other in one process (recipes/common.sh's run_kdtool)."""

from __future__ import annotations

import io
import shlex

import pytest


def lines_file(tmp_path, *lines: str):
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_every_line_runs_in_this_process(run_cli, tmp_path, tiny_lls_run, tiny_onehot_run):
    q = tmp_path / "q" / "lls.q.safetensors"
    export = shlex.join(["kdtool", "export-q", str(tiny_lls_run), "--out", str(q)])
    compare = shlex.join([".venv/bin/kdtool", "compare", str(tiny_onehot_run), "--format", "csv"]) + "  # a table"
    path = lines_file(tmp_path, "# a comment, then a blank line", "", export, compare)
    code, out, err = run_cli("batch", path)
    assert code == 0, err
    assert q.is_file() and "smoothing,n,selected_epoch_mean" in out
    assert f"[1/2] {path}, line 3: kdtool export-q" in out and f"[2/2] {path}, line 4: kdtool compare" in out


def test_lines_from_standard_input(run_cli, monkeypatch, tiny_onehot_run):
    monkeypatch.setattr("sys.stdin", io.StringIO(f"kdtool compare {tiny_onehot_run} --format csv\n"))
    code, out, err = run_cli("batch", "-")
    assert code == 0, err
    assert "[1/1] standard input, line 1: kdtool compare" in out and "smoothing,n," in out


def test_a_failure_stops_the_batch_unless_keep_going(run_cli, tmp_path, tiny_onehot_run):
    q = tmp_path / "q.safetensors"
    path = lines_file(tmp_path, f"kdtool compare {tiny_onehot_run} --bogus", f"kdtool export-q {tiny_onehot_run} "
                      f"--from-teacher --out {q}")  # fmt: skip
    code, _, err = run_cli("batch", path)
    assert code == 2 and not q.exists()
    assert "error: No such option: --bogus" in err
    assert err.strip().splitlines()[-1] == "kdtool batch: 1 of 2 commands failed: line 1 (exit code 2); 1 not run"
    code, _, err = run_cli("batch", path, "--keep-going")
    assert code == 2 and q.is_file()
    assert err.strip().splitlines()[-1] == "kdtool batch: 1 of 2 commands failed: line 1 (exit code 2)"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("python train.py", "line 2 is not a kdtool command line: 'python train.py'; each line is one, e.g. kdtool "
                            "train-teacher --smoothing lls --out runs/lls"),
        ("kdtool", "line 2 is not a kdtool command line: 'kdtool'"),
        ("kdtool compare 'runs/a", "line 2: No closing quotation (shell quoting): kdtool compare 'runs/a"),
        ("kdtool batch more.txt", "line 2: a batch does not run another batch: put that file's lines here instead"),
    ],
)  # fmt: skip
def test_a_bad_line_is_refused_before_any_runs(run_cli, tmp_path, tiny_lls_run, line, message):
    q = tmp_path / "q.safetensors"
    path = lines_file(tmp_path, f"kdtool export-q {tiny_lls_run} --out {q}", line)
    code, out, err = run_cli("batch", path)
    assert code == 2 and f"error: {path}, {message}" in err, err
    assert len(err.strip().splitlines()) == 1 and not q.exists() and "[1/" not in out


def test_an_empty_or_missing_file_is_refused(run_cli, tmp_path):
    code, _, err = run_cli("batch", lines_file(tmp_path, "# nothing", ""))
    assert code == 2 and err.strip() == f"error: {tmp_path / 'lines.txt'} holds no kdtool command line"
    code, _, err = run_cli("batch", tmp_path / "missing.txt")
    assert code == 2 and err.strip() == f"error: cannot read {tmp_path / 'missing.txt'}: No such file or directory"
