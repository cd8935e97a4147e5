"""Bad input across commands: each case prints one clear line naming its fault, exits 2 and leaves no new file."""

import json
import pickle
import shutil

import pytest
import torch
from safetensors.torch import save_file

from kdtool import QMatrix
from kdtool.data import embedded
from tests.conftest import TINY

FMNIST = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@pytest.fixture(scope="module")
def teacher(tiny_lls_run):
    """A tiny LLS run: the session's (tests/conftest.py), read only here."""
    return tiny_lls_run


def q_file(path, logits, names, alpha="0.1", **meta):
    metadata = {"format": "kdtool.q/1", "num_classes": str(len(names)), "class_names": json.dumps(names),
                "alpha": alpha, "dataset": "fashion-mnist", "source": "lls", "created_by": "test", **meta}  # fmt: skip
    save_file({"q_logits": logits}, str(path), metadata=metadata)
    return path


def make_inputs(base, teacher):
    """Build every bad input; return {case: (argv, the phrase its one-line message must hold)}. Paths live
    in ``base``."""
    good = base / "good.q.safetensors"
    QMatrix.load(teacher / "q.safetensors").save(good)
    truncated = base / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:200])
    pickled = base / "pickled.safetensors"
    pickled.write_bytes(pickle.dumps({"q_logits": [[0.0]]}))
    nan_q = q_file(base / "nan.safetensors", torch.full((10, 10), float("nan")), FMNIST)
    wrong_k = q_file(base / "k5.safetensors", torch.zeros(5, 5), FMNIST[:5])
    renamed = q_file(base / "renamed.safetensors", torch.zeros(10, 10), [*FMNIST[:6], "Blouse", *FMNIST[7:]])
    not_a_run = base / "not-a-run"
    not_a_run.mkdir()
    (not_a_run / "notes.txt").write_text("hello")
    other_kind = base / "other-kind"
    other_kind.mkdir()
    (other_kind / "config.json").write_text(json.dumps({"hello": "world"}))
    (other_kind / "model.safetensors").write_bytes(good.read_bytes())
    empty_images = base / "empty-imagefolder"
    (empty_images / "train" / "cat").mkdir(parents=True)
    (empty_images / "val" / "cat").mkdir(parents=True)
    no_checkpoint = base / "no-checkpoint"
    shutil.copytree(teacher, no_checkpoint)
    shutil.rmtree(no_checkpoint / "checkpoint")
    (no_checkpoint / "model.safetensors").unlink()  # unfinished: a finished run is "already complete"
    existing = base / "existing.q.safetensors"
    existing.write_bytes(good.read_bytes())
    blocker = base / "a-file"
    blocker.write_text("x")
    out = str(base / "out")
    return {
        "truncated safetensors": (["inspect-q", str(truncated)], "is not a readable safetensors file"),
        "pickle renamed .safetensors": (["inspect-q", str(pickled)], "kdtool never unpickles"),
        "Q with NaN": (["distill", "--substitute-q", str(nan_q), *TINY, "--out", out], "q_logits contains NaN"),
        "Q of the wrong K": (
            ["distill", "--substitute-q", str(wrong_k), *TINY, "--out", out],
            "has 5 classes and the data 10: pass --classes with 5 of the data's classes",
        ),
        "class names that don't match": (
            ["distill", "--substitute-q", str(renamed), *TINY, "--out", out],
            "its class 6 is 'Blouse', expected 'Shirt'",
        ),
        "unknown class in --classes": (
            ["transfer-q", str(good), "--classes", "Shirt,Blouse", "--out", out],
            "unknown class 'Blouse'",
        ),
        "alpha 0": (["train-teacher", "--alpha", "0", *TINY, "--out", out], "--alpha must be in (0, 1), got 0.0"),
        "alpha 1": (
            ["distill", "--substitute-q", str(good), "--alpha", "1", *TINY, "--out", out],
            "--alpha must be in (0, 1), got 1.0",
        ),
        "negative epochs": (
            ["train-teacher", *TINY[:4], "--epochs", "-2", "--out", out],
            "--epochs must be positive, got -2",
        ),
        "missing run folder": (
            ["export-q", str(base / "no-such-run"), "--out", out],
            f"{base / 'no-such-run'} does not exist",
        ),
        "folder that is not a run": (
            ["distill", "--teacher", str(not_a_run), *TINY, "--out", out],
            f"{not_a_run} is not a complete kdtool run folder",
        ),
        "run folder of another kind": (
            ["export-q", str(other_kind), "--out", out],
            "does not describe a kdtool training run",
        ),
        "unwritable output": (
            ["transfer-q", str(good), "--top-n", "3", "--out", str(blocker / "q.safetensors")],
            f"{blocker} is a file, not a folder",
        ),
        "existing output without --force": (
            ["transfer-q", str(good), "--top-n", "3", "--out", str(existing)],
            f"{existing} already exists: pass --force",
        ),
        "existing run without --force": (
            ["train-teacher", *TINY, "--out", str(teacher)],
            f"run folder {teacher} already exists: pass --force",
        ),
        "--resume with no checkpoint": (
            ["train-teacher", *TINY, "--out", str(no_checkpoint), "--resume"],
            "has no checkpoint to resume from",
        ),
        "--resume of a folder that is not a run": (
            ["train-teacher", *TINY, "--out", str(not_a_run), "--resume"],
            "nothing to resume",
        ),
        "imagefolder with no images": (
            ["train-teacher", "--dataset", f"imagefolder:{empty_images}", "--out", out],
            "no images found in",
        ),
        "unknown dataset": (
            ["train-teacher", "--dataset", "imagenet-9k", "--out", out],
            "unknown dataset 'imagenet-9k'",
        ),
        "unknown sweep option": (
            ["sweep", "--lr", "0.1,0.2", "--no-such-flag", "1", "--out", out],
            "unknown train-teacher option '--no-such-flag'",
        ),
    }


def snapshot(*folders):
    return {p: p.stat().st_mtime_ns for folder in folders for p in folder.rglob("*")}


def test_bad_input_suite(run_cli, tmp_path, teacher):
    cases = make_inputs(tmp_path, teacher)
    assert len(cases) >= 15
    messages = []
    for case, (argv, phrase) in cases.items():
        before = snapshot(tmp_path, teacher)
        code, _, stderr = run_cli(*argv)
        assert code == 2, f"{case}: exit {code}, {stderr}"
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, f"{case}: {stderr}"
        assert phrase in lines[0], f"{case}: expected {phrase!r} in {lines[0]!r}"  # not just any usage error
        assert snapshot(tmp_path, teacher) == before, f"{case} wrote or touched a file"
        messages.append(f"{case:40s} {lines[0]}")
    print("\n".join(messages))  # shown with pytest -s: the list of bad inputs and their messages


def test_corrupted_embedded_data_file(run_cli, tmp_path, monkeypatch):
    copy = tmp_path / "embedded"
    shutil.copytree(embedded.EMBEDDED_ROOT, copy)
    with open(copy / "fashion-mnist" / "train-labels-idx1-ubyte.gz", "r+b") as fh:
        fh.seek(50)
        fh.write(b"\xff\xff")
    monkeypatch.setattr(embedded, "EMBEDDED_ROOT", copy)
    code, _, stderr = run_cli("train-teacher", *TINY, "--out", tmp_path / "run")
    assert code == 2 and "SHA-256" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
