"""kdtool rerun: the same run from its config.json, --set changes checked like flags, changed sources refused."""

import csv
import json
import shutil

import pytest

from tests.conftest import TINY

TIMING = ("train_seconds", "seconds")


def metrics(run):
    with open(run / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(fh)]


def options(run):
    record = json.loads((run / "config.json").read_text())
    return {k: v for k, v in record.items() if k not in ("out", "command", "versions")}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny two-epoch LLS teacher on the CPU, trained once for the module."""
    from kdtool.cli import main

    out = tmp_path_factory.mktemp("rerun") / "lls"
    with pytest.raises(SystemExit) as done:
        main(["train-teacher", *TINY, "--epochs", "2", "--seed", "3", "--schedule", "multistep", "--device", "cpu",
              "--out", str(out)])  # fmt: skip
    assert done.value.code == 0
    return out


def test_a_rerun_reproduces_metrics_csv_exactly_on_the_cpu(run_cli, tmp_path, teacher):
    again = tmp_path / "again"
    code, stdout, stderr = run_cli("rerun", teacher, "--out", again)
    assert code == 0, stderr
    assert "-> run folder" in stdout
    assert metrics(again) == metrics(teacher)  # every value as written, timing columns aside
    assert options(again) == options(teacher)


def test_set_changes_options_and_default_rules_follow_them(tmp_path, teacher):
    from kdtool.config.rerun import parse_changes, rerun_config

    recorded = json.loads((teacher / "config.json").read_text())
    assert recorded["milestones"] == [1] and recorded["q_weight_decay"] == recorded["weight_decay"]
    cfg, given = rerun_config(teacher, tmp_path / "x", parse_changes(["alpha=0.2", "--epochs=20", "weight-decay=0"]))
    cfg.resolve()
    assert (cfg.alpha, cfg.epochs, cfg.out, cfg.seed) == (0.2, 20, str(tmp_path / "x"), 3)
    assert cfg.milestones == [10, 15] and cfg.warmup_epochs == 2 and cfg.q_weight_decay == 0  # re-derived
    assert given == {"alpha": "--set alpha", "epochs": "--set epochs", "weight_decay": "--set weight_decay"}
    cfg, _ = rerun_config(teacher, tmp_path / "x", parse_changes(["milestones=5,7", "lls_terms=forward-ce"]))
    assert cfg.milestones == [5, 7] and cfg.lls_terms == "forward-ce"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (("--set", "learning_rate=0.1"), "error: --set learning_rate: no train-teacher option"),
        (("--set", "alhpa=0.2"), "did you mean alpha?"),
        (("--set", "alpha=abc"), "error: --set alpha=abc: alpha takes a number"),
        (("--set", "epochs=2.5"), "error: --set epochs=2.5: epochs takes an integer"),
        (("--set", "alpha=2"), "--alpha must be in (0, 1)"),
        (("--set", "epsilon=0.2"), "--set epsilon does not apply to this run (--smoothing lls)"),
        (("--set", "compile=maybe"), "compile takes true or false"),
        (("--set", "alpha"), "--set takes KEY=VALUE"),
        (("--set", "out=elsewhere"), "--set out: the new run's folder is rerun's --out"),
        (("--set", "selected_epoch=1"), "--set selected_epoch: a fact about the run, not an option"),
    ],
    ids=["unknown", "typo", "not-a-number", "not-an-integer", "out-of-range", "not-applying", "bool", "no-value",
         "out", "fact"],
)  # fmt: skip
def test_bad_set_is_one_line_exit_2_and_writes_nothing(run_cli, tmp_path, teacher, changes, message):
    code, _, stderr = run_cli("rerun", teacher, "--out", tmp_path / "x", *changes)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "x").exists()


def test_a_student_reruns_from_its_teacher_and_a_changed_teacher_file_is_refused(run_cli, tmp_path, teacher):
    copy = tmp_path / "teacher"
    shutil.copytree(teacher, copy)
    student = tmp_path / "student"
    code, _, stderr = run_cli("distill", "--teacher", copy, *TINY, "--device", "cpu", "--out", student)
    assert code == 0, stderr
    code, _, stderr = run_cli("rerun", student, "--out", tmp_path / "same")  # the teacher as it was: rerun
    assert code == 0, stderr
    assert metrics(tmp_path / "same") == metrics(student) and options(tmp_path / "same") == options(student)
    (copy / "model.safetensors").write_bytes((teacher / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    code, _, stderr = run_cli("rerun", student, "--out", tmp_path / "again")
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert f"cannot rerun: {copy / 'model.safetensors'} changed since the run read it" in stderr
    assert not (tmp_path / "again").exists()


def test_rerun_names_what_a_path_is_when_it_is_not_a_run(run_cli, tmp_path):
    code, _, stderr = run_cli("rerun", tmp_path / "nowhere", "--out", tmp_path / "x")
    assert code == 2 and "run folder" in stderr and "does not exist" in stderr
