import os
from pathlib import Path

import pytest

from kdtool.cli import main, main_args

# Under pytest-xdist each worker is one of `-n` processes sharing the cores: torch's default of one thread per core
# would have them wait on each other's threads (bench/README.md: 6× slower steps on two shared cores), so a worker
# and what it starts compute on one thread. Set before any test module imports torch.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture
def run_cli(capsys):
    """Run ``kdtool ARGS`` in-process; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        out, err = capsys.readouterr()
        return exit_info.value.code, out, err

    return run


TINY = ("--limit-train", "256", "--limit-test", "128", "--epochs", "1", "--batch-size", "64")


def tiny_run(root: Path, smoothing: str) -> Path:
    """``train-teacher --smoothing SMOOTHING`` on :data:`TINY` data (LeNet-5, Fashion-MNIST) into ``root``."""
    out = root / smoothing
    assert main_args(["train-teacher", "--smoothing", smoothing, *TINY, "--out", str(out)]) == 0
    return out


# Tiny runs trained once a session (once a worker under pytest-xdist) for the tests that only read them: a test
# that writes into its run trains its own.
@pytest.fixture(scope="session")
def tiny_onehot_run(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("session-runs"), "onehot")


@pytest.fixture(scope="session")
def tiny_lls_run(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("session-runs"), "lls")


@pytest.fixture
def interrupt_at_epoch(monkeypatch):
    """``interrupt_at_epoch(n)``: training raises Ctrl-C as 0-based epoch ``n`` starts (``None``: no more)."""
    from kdtool.training.engine import Trainer

    original = Trainer.train_epoch

    def arm(epoch: int | None) -> None:
        def train_epoch(self, current, on_step=None):
            if current == epoch:
                raise KeyboardInterrupt
            return original(self, current, on_step)

        monkeypatch.setattr(Trainer, "train_epoch", original if epoch is None else train_epoch)

    return arm
