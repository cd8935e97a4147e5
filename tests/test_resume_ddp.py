import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kdtool import QMatrix
from kdtool.runs.folder import RunDir

# several 3-epoch AlexNet runs and 2-process torchrun jobs: 10-35 s each on 2 CPU cores
pytestmark = pytest.mark.slow

ARGS = ("train-teacher", "--model", "alexnet", "--limit-train", "192", "--limit-test", "64", "--batch-size", "64",
        "--epochs", "3", "--seed", "7")  # fmt: skip


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_interrupt_then_resume_is_bit_identical(run_cli, tmp_path, interrupt_at_epoch):
    assert run_cli(*ARGS, "--out", tmp_path / "straight")[0] == 0

    interrupt_at_epoch(2)
    code, _, stderr = run_cli(*ARGS, "--out", tmp_path / "resumed")
    assert code == 130 and "epoch 2" in stderr and "--resume" in stderr
    assert not (tmp_path / "resumed" / "model.safetensors").exists()
    assert len(RunDir(tmp_path / "resumed").metrics()) == 2

    interrupt_at_epoch(None)
    code, _, stderr = run_cli(*ARGS, "--out", tmp_path / "resumed", "--resume")
    assert code == 0, stderr
    assert same_weights(tmp_path / "straight", tmp_path / "resumed")
    torch.testing.assert_close(
        QMatrix.load(tmp_path / "straight" / "q.safetensors").logits,
        QMatrix.load(tmp_path / "resumed" / "q.safetensors").logits,
        rtol=0,
        atol=0,
    )
    drop_time = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]  # noqa: E731
    assert drop_time(RunDir(tmp_path / "straight").metrics()) == drop_time(RunDir(tmp_path / "resumed").metrics())


def test_resume_refuses_changed_options_and_missing_checkpoints(run_cli, tmp_path):
    out = tmp_path / "run"
    assert run_cli(*ARGS, "--out", out)[0] == 0
    code, _, stderr = run_cli(*ARGS[:-2], "--seed", "8", "--out", out, "--resume")
    assert code == 2 and "cannot resume" in stderr and "--seed 7, now 8" in stderr
    code, _, stderr = run_cli(*ARGS, "--smoothing", "ls", "--out", out, "--resume")
    assert code == 2 and "--smoothing" in stderr
    shutil.rmtree(out / "checkpoint")
    (out / "model.safetensors").unlink()  # an unfinished run without its checkpoint (a finished one is complete)
    code, _, stderr = run_cli(*ARGS, "--out", out, "--resume")
    assert code == 2 and "no checkpoint" in stderr
    code, _, stderr = run_cli(*ARGS, "--out", tmp_path / "nothing-here", "--resume")
    assert code == 2 and "nothing to resume" in stderr
    code, _, stderr = run_cli(*ARGS, "--out", out, "--resume", "--force")
    assert code == 2 and "only one" in stderr


def kdtool_cmd() -> list[str]:
    return [str(Path(sys.executable).parent / "kdtool")]


def test_sigterm_stops_cleanly_and_keeps_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [*kdtool_cmd(), "train-teacher", "--limit-train", "512", "--limit-test", "64", "--epochs", "200",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while not (out / "checkpoint" / "last.pt").exists():
        assert time.time() < deadline and proc.poll() is None, "training never wrote a checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in stderr and "--resume" in stderr and "Traceback" not in stderr
    leftovers = [p.name for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    assert torch.load(out / "checkpoint" / "last.pt", weights_only=True)["epochs_done"] >= 1


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    common = ["train-teacher", "--smoothing", "lls", "--limit-train", "256", "--limit-test", "64", "--epochs", "2",
              "--no-augment", "--device", "cpu", "--seed", "3"]  # fmt: skip
    torchrun = str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run(
        [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "kdtool", *common, "--batch-size", "32",
         "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 processes; largest parameter difference from rank 0: 0" in two.stdout
    one = subprocess.run(
        [*kdtool_cmd(), *common, "--batch-size", "64", "--out", str(tmp_path / "single")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    q_ddp = QMatrix.load(tmp_path / "ddp" / "q.safetensors").logits
    q_one = QMatrix.load(tmp_path / "single" / "q.safetensors").logits
    assert q_ddp.abs().max() > 0
    torch.testing.assert_close(q_ddp, q_one, rtol=1e-4, atol=1e-5)
    assert RunDir(tmp_path / "ddp").config()["world_size"] == 2


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_two_process_ols_keeps_its_soft_labels_in_sync(tmp_path):
    torchrun = str(Path(sys.executable).parent / "torchrun")
    done = subprocess.run(
        [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "kdtool", "train-teacher", "--smoothing", "ols",
         "--limit-train", "256", "--limit-test", "64", "--epochs", "2", "--batch-size", "32", "--device", "cpu",
         "--out", str(tmp_path / "ols")],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    # the soft labels are built from both ranks' correct predictions: identical everywhere
    assert "2 processes; largest parameter difference from rank 0: 0" in done.stdout


CHECK_RELEASED = """
import gc, sys
gc.disable()  # what a run leaves to the collector stays visible
from torch import nn
from kdtool.cli import main_args
main_args(["train-teacher", "--limit-train", "128", "--limit-test", "64", "--epochs", "1", "--device", "cpu",
           "--batch-size", "32", "--out", sys.argv[1]])
alive = [o for o in gc.get_objects() if isinstance(o, nn.parallel.DistributedDataParallel)]
print(f"DDP objects alive after the run: {len(alive)}")
"""


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_a_torchrun_run_releases_its_ddp_model_before_the_process_group_goes(tmp_path):
    # left to the garbage collector, the DDP model (which holds the process group) outlived
    # destroy_process_group until interpreter exit, where gloo can abort a finished process
    script = tmp_path / "check.py"
    script.write_text(CHECK_RELEASED)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node", "2", str(script),
         str(tmp_path / "run")],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("DDP objects alive after the run: 0") == 2, done.stdout[-2000:]
