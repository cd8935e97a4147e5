"""#28.4: --force removes exactly what kdtool recorded writing, at any depth, and refuses anything else."""

import io
import json

import matplotlib
import pytest

from kdtool.fileio import MANIFEST, written_by_kdtool
from tests.conftest import TINY

matplotlib.use("Agg")


def user_png() -> bytes:
    """A picture the user made with matplotlib (kdtool's figures are marked; this one is not)."""
    import matplotlib.pyplot as plt

    fig = plt.figure()
    plt.plot([1, 2])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


@pytest.fixture
def logged_run(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "run"
    code, _, err = run_cli("train-teacher", *TINY, "--log", "tensorboard,wandb", "--out", out)
    assert code == 0, err
    return out


@pytest.mark.parametrize("user_file", ["checkpoint/my-notes.txt", "tensorboard/my-events.txt", "wandb/keep/me.txt",
                                       "report-for-paper.html", "confusion-mine.png"])  # fmt: skip
def test_force_refuses_a_run_holding_a_user_file_at_any_depth(run_cli, logged_run, user_file):
    mine = logged_run / user_file
    made_folder = not mine.parent.exists()
    mine.parent.mkdir(parents=True, exist_ok=True)
    mine.write_bytes(user_png() if user_file.endswith(".png") else b"<html>the user's own</html>")
    code, _, err = run_cli("train-teacher", *TINY, "--out", logged_run, "--force")
    assert code == 2 and f"{logged_run} holds '{user_file}', which kdtool did not write" in err, err
    assert mine.is_file() and (logged_run / "model.safetensors").is_file()  # nothing removed
    mine.unlink()
    if made_folder:  # a folder of the user's, even empty, is refused too
        code, _, err = run_cli("train-teacher", *TINY, "--out", logged_run, "--force")
        assert code == 2 and f"holds '{mine.parent.relative_to(logged_run)}', which kdtool did not write" in err
        mine.parent.rmdir()
    code, _, err = run_cli("train-teacher", *TINY, "--out", logged_run, "--force")
    assert code == 0, err


def test_force_removes_what_kdtool_wrote_in_the_run_folder_earlier(run_cli, logged_run, tmp_path):
    heat, page = logged_run / "heat.png", logged_run / "report.html"
    assert run_cli("inspect-q", logged_run / "q.safetensors", "--heatmap", heat)[0] == 0
    assert run_cli("report", logged_run, "--out", page, "--device", "cpu")[0] == 0
    recorded = json.loads((logged_run / MANIFEST).read_text())["files"]
    assert {"heat.png", "report.html", "checkpoint/last.pt", "config.json"} <= set(recorded)
    assert any(f.startswith("tensorboard/events.out.tfevents") for f in recorded)
    code, _, err = run_cli("train-teacher", *TINY, "--smoothing", "ls", "--out", logged_run, "--force")
    assert code == 0, err
    assert not heat.exists() and not page.exists() and not (logged_run / "wandb").exists()
    assert not (logged_run / "q.safetensors").exists()


def test_force_replaces_only_figures_and_pages_kdtool_made(run_cli, tmp_path):
    q = "artifacts/fmnist-lenet5-lls.q.safetensors"
    mine = tmp_path / "mine.png"
    mine.write_bytes(user_png())
    code, _, err = run_cli("inspect-q", q, "--heatmap", mine, "--force")
    assert code == 2 and "is not a file kdtool wrote" in err and mine.read_bytes() == user_png()
    ours = tmp_path / "ours.pdf"
    assert run_cli("inspect-q", q, "--heatmap", ours)[0] == 0 and written_by_kdtool(ours)
    assert run_cli("inspect-q", q, "--heatmap", ours, "--force")[0] == 0


def image_folder(root):
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / split / cls / f"{i}.png")
    return root


def test_shard_force_removes_only_its_own_shards(run_cli, tmp_path):
    out = tmp_path / "wds"
    args = ("shard", f"imagefolder:{image_folder(tmp_path / 'images')}", "--shard-size", "2", "--out", out)
    assert run_cli(*args)[0] == 0
    nested = out / "old" / "train-000099.tar"
    nested.parent.mkdir()
    nested.write_bytes(b"the user's shard")
    code, _, err = run_cli(*args, "--force")
    assert code == 2 and f"{nested} is something else" in err and nested.is_file()
    nested.unlink()
    nested.parent.rmdir()
    assert run_cli(*args, "--force")[0] == 0
    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / "train-000000.tar").write_bytes(b"made by another tool")
    (foreign / "classes.txt").write_text("a\n")
    code, _, err = run_cli(*args[:-1], foreign, "--force")
    assert code == 2 and "has no such record" in err and (foreign / "train-000000.tar").is_file()
