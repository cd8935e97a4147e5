import pytest

from kdtool.cli import main


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
