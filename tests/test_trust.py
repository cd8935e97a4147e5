"""Trustworthy runs: --force never deletes what kdtool did not write, one "same run?" check,
options that do not apply are refused, and the layering that keeps losses/ and --help light."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kdtool.config.runconfig import DistillConfig, TrainConfig
from kdtool.errors import KdtoolError
from kdtool.fileio import written_by_kdtool
from kdtool.runs.folder import RunDir, clear_run, first_difference, is_run
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parent.parent
Q_ARTIFACT = ROOT / "artifacts" / "fmnist-lenet5-lls.q.safetensors"


def foreign_project(path: Path) -> Path:
    """A user's folder that happens to hold a config.json."""
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"name": "my project", "version": 3}')
    (path / "notes.txt").write_text("do not lose me")
    return path


def untouched(path: Path) -> bool:
    return sorted(p.name for p in path.iterdir()) == ["config.json", "notes.txt"] and (
        (path / "notes.txt").read_text() == "do not lose me"
    )


@pytest.fixture
def finished_run(tiny_lls_run):
    """A tiny finished LLS run (the session's: these tests only read it)."""
    return tiny_lls_run


@pytest.mark.parametrize(
    "command",
    [
        ("train-teacher", *TINY),
        ("distill", "--substitute-q", str(Q_ARTIFACT), *TINY),
    ],
    ids=["train-teacher", "distill"],
)
def test_force_on_a_foreign_folder_is_refused_and_touches_nothing(run_cli, tmp_path, command):
    project = foreign_project(tmp_path / "project")
    code, _, stderr = run_cli(*command, "--out", project, "--force")
    assert code == 2 and "is not a kdtool run folder" in stderr and "config.json is not kdtool's" in stderr
    assert len(stderr.strip().splitlines()) == 1 and untouched(project)


def test_seeds_and_sweep_refuse_to_replace_a_foreign_seed_folder(run_cli, tmp_path):
    project = foreign_project(tmp_path / "runs" / "seed0")
    code, _, stderr = run_cli("train-teacher", *TINY, "--seeds", "0", "--out", tmp_path / "runs", "--force")
    assert code == 2 and "is not a kdtool run folder" in stderr and untouched(project)
    grid = foreign_project(tmp_path / "sweep" / "lr-0.1")
    args = ("sweep", "--lr", "0.1,0.05", *TINY, "--out", tmp_path / "sweep")
    code, _, stderr = run_cli(*args)
    assert code == 2 and "is not a kdtool run folder" in stderr and untouched(grid)  # --force would be refused too
    assert "pass --force" not in stderr
    code, _, stderr = run_cli(*args, "--force")
    assert code == 2 and "is not a kdtool run folder" in stderr and untouched(grid)
    assert not (tmp_path / "sweep" / "lr-0.05").exists()  # every grid point is checked before any training


def test_q_commands_refuse_to_replace_a_file_kdtool_did_not_write(run_cli, tmp_path, finished_run):
    mine = tmp_path / "mine.q.safetensors"
    mine.write_text("a file of the user's that happens to have this name")
    for command in (
        ("export-q", finished_run, "--out", mine),
        ("transfer-q", Q_ARTIFACT, "--top-n", "3", "--out", mine),
        ("make-prior", "semantic", "--dataset", "fashion-mnist", "--out", mine),
    ):
        code, _, stderr = run_cli(*command, "--force")
        assert code == 2 and "is not a file kdtool wrote" in stderr, command
        assert mine.read_text() == "a file of the user's that happens to have this name"
    kdtool_q = tmp_path / "q.safetensors"
    assert run_cli("export-q", finished_run, "--out", kdtool_q)[0] == 0 and written_by_kdtool(kdtool_q)
    assert run_cli("transfer-q", Q_ARTIFACT, "--top-n", "3", "--out", kdtool_q, "--force")[0] == 0


def test_force_replaces_a_real_run_but_not_one_holding_a_foreign_file(run_cli, tmp_path, finished_run):
    out = tmp_path / "run"
    assert run_cli("train-teacher", *TINY, "--out", out)[0] == 0
    (out / "checkpoint" / ".last.pt.x1y2.tmp").write_bytes(b"")  # a killed write's leftover is kdtool's
    code, _, stderr = run_cli("train-teacher", *TINY, "--smoothing", "ls", "--out", out, "--force")
    assert code == 0, stderr
    assert json.loads((out / "config.json").read_text())["smoothing"] == "ls" and not (out / "q.safetensors").exists()
    (out / "plots").mkdir()
    code, _, stderr = run_cli("train-teacher", *TINY, "--out", out, "--force")
    assert code == 2 and "holds 'plots', which kdtool did not write" in stderr
    assert (out / "plots").is_dir() and (out / "model.safetensors").is_file()


def test_clear_run_removes_only_kdtool_entries(tmp_path, finished_run):
    assert is_run(finished_run) and not is_run(foreign_project(tmp_path / "p"))
    with pytest.raises(KdtoolError, match="not a kdtool run folder"):
        clear_run(tmp_path / "p")
    assert untouched(tmp_path / "p")


def test_seeds_refuse_a_finished_seed_of_other_options_and_skip_same_ones(run_cli, tmp_path):
    out = tmp_path / "lls"
    assert run_cli("train-teacher", *TINY, "--seeds", "0", "--out", out)[0] == 0
    before = (out / "seed0" / "model.safetensors").stat().st_mtime_ns
    code, _, stderr = run_cli("train-teacher", *TINY, "--seeds", "0", "--alpha", "0.2", "--out", out)
    assert code == 2 and "seed0 was trained with --alpha 0.1, now 0.2" in stderr and "--force" in stderr
    code, stdout, _ = run_cli("train-teacher", *TINY, "--seeds", "0", "--out", out)
    assert code == 0 and "finished earlier, skipped" in stdout
    assert (out / "seed0" / "model.safetensors").stat().st_mtime_ns == before
    code, _, stderr = run_cli("train-teacher", *TINY, "--seeds", "0,1", "--out", out, "--resume")
    assert code == 2 and "seed1 has not been started" in stderr


def test_lls_st_resumes_without_retyping_alpha(run_cli, tmp_path, interrupt_at_epoch):
    args = ("distill", "--substitute-q", Q_ARTIFACT, "--limit-train", "256", "--limit-test", "128",
            "--batch-size", "64", "--epochs", "2", "--out", tmp_path / "st")  # fmt: skip
    interrupt_at_epoch(1)
    code, _, stderr = run_cli(*args)
    assert code == 130 and "--resume" in stderr
    code, _, stderr = run_cli(*args)  # the same command again: point at --resume before --force
    assert code == 2 and "interrupted after epoch 1: add --resume" in stderr
    interrupt_at_epoch(None)
    code, _, stderr = run_cli(*args, "--resume")
    assert code == 0, stderr
    assert json.loads((tmp_path / "st" / "config.json").read_text())["alpha"] == 0.1  # the Q artifact's
    code, _, stderr = run_cli(*args, "--alpha", "0.3", "--resume")
    assert code == 2 and "--alpha 0.1, now 0.3" in stderr


def test_a_run_recorded_before_an_option_existed_still_resumes(run_cli, tmp_path, interrupt_at_epoch):
    args = ("distill", "--substitute-q", Q_ARTIFACT, "--limit-train", "256", "--limit-test", "128",
            "--batch-size", "64", "--epochs", "2", "--out", tmp_path / "st")  # fmt: skip
    interrupt_at_epoch(1)
    assert run_cli(*args)[0] == 130
    record = json.loads((tmp_path / "st" / "config.json").read_text())
    assert record["imbalance_ratio"] is None and record["class_weights"] == "none"  # their declared defaults
    older = {k: v for k, v in record.items() if k not in ("imbalance_ratio", "class_weights")}  # added later
    (tmp_path / "st" / "config.json").write_text(json.dumps(older))
    code, _, stderr = run_cli(*args, "--imbalance-ratio", "10", "--resume")  # not the default: another run
    assert code == 2 and "--imbalance-ratio unset, now 10" in stderr
    code, _, stderr = run_cli(*args, "--class-weights", "effective", "--resume")
    assert code == 2 and "--class-weights unset, now effective" in stderr
    interrupt_at_epoch(None)
    code, _, stderr = run_cli(*args, "--resume")
    assert code == 0, stderr


REFUSED = [
    (("--smoothing", "ls", "--alpha", "0.2"), "--alpha does not apply to this run (--smoothing ls)"),
    (("--smoothing", "lls", "--epsilon", "0.2"), "--epsilon does not apply to this run (--smoothing lls)"),
    (("--smoothing", "ls", "--lls-terms", "forward-ce"), "--lls-terms does not apply"),
    (("--smoothing", "onehot", "--q-weight-decay", "0"), "--q-weight-decay does not apply"),
    (("--smoothing", "lls", "--teacher", "runs/x"), "--teacher does not apply to this run (--smoothing lls)"),
    (("--smoothing", "onehot", "--prior", "p.q.safetensors"), "--prior does not apply"),
    (("--smoothing", "ls", "--focal-gamma", "2"), "--focal-gamma does not apply"),
    (("--smoothing", "ls", "--zipf-weight", "2"), "--zipf-weight does not apply"),
    (("--smoothing", "tfkd-reg", "--zipf-exponent", "2"), "--zipf-exponent does not apply"),
    (("--smoothing", "ls", "--tfkd-temperature", "4"), "--tfkd-temperature does not apply"),
    (("--smoothing", "tfkd-self", "--teacher", "x", "--tfkd-correct-prob", "0.8"), "--tfkd-correct-prob does not"),
    (("--schedule", "cosine", "--milestones", "3"), "--milestones does not apply to this run (--schedule cosine)"),
    (("--schedule", "constant", "--gamma", "0.5"), "--gamma does not apply to this run (--schedule constant)"),
    (("--image-size", "32",), "--image-size does not apply to this run (--dataset fashion-mnist)"),
    (("--download",), "--download does not apply to this run (--dataset fashion-mnist, no --data-root)"),
    (("--vocab-size", "100"), "--vocab-size does not apply"),
    (("--max-len", "10"), "--max-len does not apply"),
    (("--embed-dim", "10"), "--embed-dim does not apply"),
    (("--hidden-size", "10"), "--hidden-size does not apply"),
    (("--dataset", "goemotions-ekman", "--model", "bilstm", "--augment", "none"), "--augment does not apply"),
    (("--dataset", "goemotions-ekman", "--model", "bilstm", "--no-augment"), "--no-augment does not apply"),
    (("--dataset", "goemotions-ekman", "--model", "bilstm", "--val-fraction", "0.1"), "--val-fraction does not"),
    (("--augment", "none", "--no-augment"), "--augment and --no-augment contradict"),
    (("--seeds", "0,1", "--seed", "3"), "--seed and --seeds contradict"),
]  # fmt: skip


@pytest.mark.parametrize(("options", "message"), REFUSED, ids=[m.split(" does")[0] for _, m in REFUSED])
def test_options_that_do_not_apply_are_refused(run_cli, tmp_path, options, message):
    code, _, stderr = run_cli("train-teacher", *options, "--out", tmp_path / "x")
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_distill_refuses_options_of_the_other_source(run_cli, tmp_path):
    code, _, stderr = run_cli("distill", "--teacher", tmp_path, "--alpha", "0.3", "--out", tmp_path / "x")
    assert code == 2 and "--alpha is the LLS-ST mixing weight" in stderr
    code, _, stderr = run_cli("distill", "--substitute-q", Q_ARTIFACT, "--schedule", "cosine", "--gamma", "0.2",
                              "--out", tmp_path / "x")  # fmt: skip
    assert code == 2 and "--gamma does not apply to this run (--schedule cosine)" in stderr


def test_defaults_never_trigger_and_config_records_only_what_applies():
    ls = TrainConfig(smoothing="ls", schedule="cosine").resolve()
    ls.check_given({})
    record = ls.to_dict()
    assert "epsilon" in record and "alpha" not in record and "milestones" not in record and "vocab_size" not in record
    kd = DistillConfig(teacher="runs/t").resolve().to_dict()
    assert "teacher" in kd and "substitute_q" not in kd and "alpha" not in kd and "epsilon" not in kd


def test_an_official_validation_split_selects_the_epoch_by_default():
    assert TrainConfig(dataset="goemotions-ekman", model="bilstm").resolve().select == "best-val-loss"
    assert TrainConfig(dataset="fashion-mnist").resolve().select == "last"


def test_unknown_config_keys_are_errors_not_dropped():
    with pytest.raises(KdtoolError, match="unknown train-teacher option 'learning_rate'"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    assert TrainConfig.from_record({"kind": "train-teacher", "versions": {}, "lr": 0.2}).lr == 0.2


def test_first_difference_ignores_options_that_do_not_change_the_result():
    resolved = TrainConfig(alpha=0.1, device="cpu", out="a").resolve()
    recorded = {"kind": "train-teacher", **resolved.to_dict()}
    elsewhere = dataclasses.replace(resolved, device="cuda", out="b")
    assert first_difference(recorded, elsewhere.result_options()) is None
    assert first_difference(recorded, dataclasses.replace(resolved, alpha=0.2).result_options()) == ("alpha", 0.1, 0.2)
    assert first_difference(recorded, {"kind": "distill"})[0] == "kind"
    older = {k: v for k, v in recorded.items() if k != "lls_correction"}  # made before --lls-correction existed
    assert first_difference(older, resolved.result_options())[0] == "lls_correction"
    assert first_difference(older, resolved.result_options(), resolved.result_defaults()) is None
    corrected = dataclasses.replace(resolved, lls_correction="prior")
    assert first_difference(older, corrected.result_options(), corrected.result_defaults())[0] == "lls_correction"


def test_kdtool_run_marker(tmp_path):
    RunDir(tmp_path).write_config("train-teacher", {"lr": 0.1}, {})
    assert is_run(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"versions": {"kdtool": "0.1.0"}, "kind": "notebook"}))
    assert not is_run(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    assert not is_run(tmp_path)


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True, cwd=ROOT)  # fmt: skip
    return set(out.stdout.split())


def test_losses_is_a_leaf():
    loaded = _modules_after("import kdtool.losses")
    upper = ("kdtool.data", "kdtool.training", "kdtool.workflows", "kdtool.cli", "kdtool.config", "kdtool.distill")
    assert not [m for m in loaded if m.startswith(upper)]


def test_help_and_import_do_not_load_torch():
    for code in ("import kdtool", "from kdtool.cli import app"):
        loaded = _modules_after(code)
        assert "torch" not in loaded and "torchvision" not in loaded, code
    script = "import sys\nfrom kdtool.cli import main\ntry:\n main(['--help'])\nexcept SystemExit:\n pass\n"
    help_run = subprocess.run([sys.executable, "-c", script + "print('MODULES', ' '.join(sys.modules))"],
                              capture_output=True, text=True, check=True, cwd=ROOT)  # fmt: skip
    modules = help_run.stdout.split("MODULES", 1)[1].split()
    assert "train-teacher" in help_run.stdout and "torch" not in modules
    import kdtool

    assert kdtool.LearnableLabelSmoothing.__name__ == "LearnableLabelSmoothing"  # loaded on first use


def test_compare_tables_do_not_load_torch(tiny_lls_run):
    """A table of finished runs reads their JSON and CSV files: no torch import (about 1.5 s of CPU a process)."""
    command = ["compare", str(tiny_lls_run), "--format", "csv"]
    loaded = _modules_after(f"from kdtool.cli import main_args\nmain_args({command!r})")
    assert "smoothing,n,selected_epoch_mean,selected_epoch_std" in " ".join(loaded)  # the table was printed
    assert "torch" not in loaded


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (("export-q", "{run}", "--device", "cpu", "--out", "{tmp}/q.safetensors"), "--device does not apply here"),
        (("inspect-q", "{q}", "--device", "cpu"), "--device does not apply here: it is used with --vs-confusion"),
        (("inspect-q", "{q}", "--force"), "--force does not apply here: it is used with --heatmap"),
        (("compare", "{run}", "--device", "cpu"), "--device does not apply here: it is used with --plot"),
        (("compare", "{run}", "--force"), "--force does not apply here"),
    ],
    ids=["export-q --device", "inspect-q --device", "inspect-q --force", "compare --device", "compare --force"],
)
def test_other_commands_refuse_options_they_will_not_use(run_cli, tmp_path, finished_run, command, message):
    args = [a.format(run=finished_run, q=Q_ARTIFACT, tmp=tmp_path) for a in command]
    code, _, stderr = run_cli(*args)
    assert code == 2 and message in stderr and not list(tmp_path.iterdir())
