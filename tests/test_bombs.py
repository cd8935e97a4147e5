"""#28.7: inputs that cannot exhaust memory: a decompression bomb and an oversized tar member are refused in
one line, or skipped and counted under --skip-bad-samples, on every image path."""

import io
import tarfile

import pytest
from PIL import Image

from kdtool.data import shards as wds

SMALL_RUN = ("--image-size", "32", "--epochs", "1", "--batch-size", "4", "--workers", "0")


def bomb_png(side: int) -> bytes:
    """A real PNG of side × side pixels that compresses to a few KiB (a 14,000² one decodes to 561 MiB as RGB)."""
    Image.MAX_IMAGE_PIXELS, limit = None, Image.MAX_IMAGE_PIXELS
    try:
        buffer = io.BytesIO()
        Image.new("1", (side, side)).save(buffer, format="png", optimize=True)
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bomb_folder(tmp_path_factory):
    """An imagefolder whose first training image claims 10,000 × 10,000 pixels: over PIL's limit of 89 million
    (past which PIL only warns, up to twice it)."""
    root = tmp_path_factory.mktemp("bomb")
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (8, 8), (30 * i, 0, 0)).save(root / split / cls / f"{i}.png")
    (root / "train" / "a" / "bomb.png").write_bytes(bomb_png(10_000))
    return root


@pytest.mark.parametrize("loader", ["stream", "memory"])
def test_a_decompression_bomb_is_refused_in_one_line(run_cli, bomb_folder, tmp_path, loader):
    args = SMALL_RUN if loader == "stream" else SMALL_RUN[:-2]  # --workers is the streaming path's
    code, _, err = run_cli("train-teacher", "--dataset", f"imagefolder:{bomb_folder}", "--loader", loader, *args,
                           "--out", tmp_path / "run")  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "bomb.png" in err and "10000 × 10000 pixels, over the limit of 89,478,485" in err


def test_a_decompression_bomb_is_skipped_and_counted(run_cli, bomb_folder, tmp_path):
    code, out, err = run_cli("train-teacher", "--dataset", f"imagefolder:{bomb_folder}", "--loader", "stream",
                             *SMALL_RUN, "--skip-bad-samples", "--out", tmp_path / "run")  # fmt: skip
    assert code == 0, err
    assert "skipped 1 unreadable sample" in out + err and "bomb.png" in out + err


def shards_with(tmp_path, member_name: str, data: bytes):
    """wds: shards whose first training sample is ``member_name`` = ``data``, then ordinary samples."""
    folder = tmp_path / "wds"
    folder.mkdir()
    small = io.BytesIO()
    Image.new("RGB", (8, 8)).save(small, format="png")
    for split in ("train", "val"):
        with tarfile.open(folder / f"{split}-000000.tar", "w") as tar:
            members = [(member_name, data), ("00000000.cls", b"0")] if split == "train" else []
            for i in range(1, 5):
                members += [(f"{i:08d}.png", small.getvalue()), (f"{i:08d}.cls", str(i % 2).encode())]
            for name, payload in members:
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    (folder / "classes.txt").write_text("a\nb\n")
    return f"wds:{folder}/train-000000.tar"


def test_a_bomb_inside_a_shard_is_refused_or_skipped(run_cli, tmp_path):
    dataset = shards_with(tmp_path, "00000000.png", bomb_png(10_000))
    code, _, err = run_cli("train-teacher", "--dataset", dataset, *SMALL_RUN, "--out", tmp_path / "run")
    assert code == 2 and "00000000" in err and "over the limit of 89,478,485" in err
    code, out, err = run_cli("train-teacher", "--dataset", dataset, *SMALL_RUN, "--skip-bad-samples",
                             "--out", tmp_path / "skipped")  # fmt: skip
    assert code == 0 and "skipped 1 unreadable sample" in out + err


def test_an_oversized_tar_member_is_not_read(run_cli, tmp_path, monkeypatch):
    monkeypatch.setattr(wds, "MAX_MEMBER_BYTES", 4096)
    dataset = shards_with(tmp_path, "00000000.png", b"\0" * 5000)
    code, _, err = run_cli("train-teacher", "--dataset", dataset, *SMALL_RUN, "--out", tmp_path / "run")
    assert code == 2 and "png is 5,000 bytes, over the limit of 4,096" in err
