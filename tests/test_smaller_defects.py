"""#28.8: the smaller defects: an --out that cannot be created is one line before any data loads."""

import pytest

from tests.conftest import TINY


@pytest.mark.parametrize("out", ["/proc/kdtool-run", "/proc/self/kdtool/run"])
def test_an_out_folder_that_cannot_be_created_is_one_line_before_the_data_loads(run_cli, out, monkeypatch):
    import kdtool.training.rundata

    def no_data(*args, **kwargs):
        raise AssertionError("the data must not load for an --out that cannot be written")

    monkeypatch.setattr(kdtool.training.rundata, "load_full_data", no_data)  # what load_data calls
    code, _, err = run_cli("train-teacher", *TINY, "--out", out)
    assert code == 2 and err.startswith(f"error: cannot write --out {out}: /proc") and len(err.splitlines()) == 1
