"""Atomic writes: usual permissions, no umask side effect, nothing left behind on failure."""

import importlib
import os
import stat

import pytest

import kdtool.fileio as fileio


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_file_gets_the_usual_permissions(tmp_path, mask):
    old = os.umask(mask)
    try:
        fileio.atomic_write_text(tmp_path / "a.txt", "hello")
        fileio.atomic_write_json(tmp_path / "b.json", {"x": 1})
    finally:
        os.umask(old)
    for name in ("a.txt", "b.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json"]  # no temporary file left


def test_importing_fileio_leaves_the_umask_alone(monkeypatch):
    mask = current_umask()
    calls = []
    real_umask = os.umask
    monkeypatch.setattr(os, "umask", lambda m: calls.append(m) or real_umask(m))
    importlib.reload(fileio)
    assert calls == []  # not even a set-and-restore: the umask is process-wide, other threads see it
    monkeypatch.undo()
    assert current_umask() == mask


def test_failed_write_leaves_the_target_and_no_temporary_file(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")

    def failing_writer(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        fileio.atomic_write(target, failing_writer)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_temporary_names_are_unique_and_never_reuse_a_file(tmp_path, monkeypatch):
    tokens = iter(["aaaa", "aaaa", "bbbb"])
    monkeypatch.setattr(fileio.secrets, "token_hex", lambda n: next(tokens))
    first = fileio._create_temp_beside(tmp_path / "x")
    second = fileio._create_temp_beside(tmp_path / "x")  # "aaaa" exists: O_EXCL skips it
    assert first != second and first.parent == second.parent == tmp_path
    assert second.name.endswith(".bbbb.tmp") and first.name.startswith(".x.")
