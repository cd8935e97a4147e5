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
