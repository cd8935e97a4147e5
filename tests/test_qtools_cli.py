"""export-q, inspect-q and transfer-q on tiny trained runs."""

import json
import pickle

import matplotlib.image
import pytest
import torch

from kdtool import QMatrix
from kdtool.cli import main
from kdtool.data import load_dataset
from kdtool.runs.folder import RunDir
from kdtool.training.runmodel import load_run_model

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def place(tmp_path_factory, tiny_lls_run, tiny_onehot_run):
    """Two tiny runs (LLS and 1-hot: the session's, tests/conftest.py, read only here), the LLS run's exported Q,
    and two files that are not usable Qs."""
    root = tmp_path_factory.mktemp("qtools")
    with pytest.raises(SystemExit) as info:
        main(["export-q", str(tiny_lls_run), "--out", str(root / "lls.q.safetensors")])
    assert info.value.code == 0
    (root / "pickle.safetensors").write_bytes(pickle.dumps({"q_logits": [[0.0]]}))
    QMatrix(torch.zeros(2, 2), ["x", "y"], 0.1, "other", "lls").save(root / "foreign.q.safetensors")
    return {
        "root": root,
        "lls": tiny_lls_run,
        "onehot": tiny_onehot_run,
        "q": root / "lls.q.safetensors",
        "pickle": root / "pickle.safetensors",
        "foreign": root / "foreign.q.safetensors",
    }


def test_export_q_copies_the_learned_q_with_its_provenance(place):
    q = QMatrix.load(place["q"])
    learned = QMatrix.load(place["lls"] / "q.safetensors")
    assert torch.equal(q.logits, learned.logits) and q.source == "lls" and q.alpha == learned.alpha
    assert q.extra["run"] == str(place["lls"]) and q.extra["run_smoothing"] == "lls"
    assert q.extra["run_model"] == "lenet5" and len(q.extra["run_model_sha256"]) == 64
    assert float(q.extra["run_test_acc"]) == pytest.approx(float(RunDir(place["lls"]).metrics()[-1]["test_acc"]))


@pytest.mark.parametrize(("flags", "temperature"), [([], 4.0), (["--temperature", "1"], 1.0),
                                                     (["--temperature", "2.5"], 2.5)])  # fmt: skip
def test_export_q_from_teacher_is_the_class_mean_log_probability(run_cli, place, tmp_path, flags, temperature):
    out = tmp_path / "teacher.q.safetensors"
    code, stdout, stderr = run_cli("export-q", place["onehot"], "--from-teacher", "--alpha", "0.3", *flags,
                                   "--out", out)  # fmt: skip
    assert code == 0, stderr
    assert "source teacher" in stdout
    q = QMatrix.load(out)
    assert q.source == "teacher" and q.alpha == 0.3 and q.extra["run_smoothing"] == "onehot"
    assert q.extra["estimator"] == "class-mean-log-prob" and q.extra["samples"] == "256"
    assert float(q.extra["temperature"]) == temperature
    # the same estimate, computed here without kdtool's loaders: normalise the raw training images by hand
    model, _, info = load_run_model(RunDir.open(place["onehot"]))
    train = load_dataset("fashion-mnist").limited(256, 128, seed=0).train
    mean, std = (torch.tensor(info[key]).view(1, -1, 1, 1) for key in ("mean", "std"))
    with torch.no_grad():
        log_p = torch.log_softmax(model((train.inputs.float() / 255 - mean) / std) / temperature, dim=1)
    expected = torch.stack([log_p[train.labels == c].mean(0) for c in range(10)])
    torch.testing.assert_close(q.logits, expected, atol=1e-5, rtol=1e-5)


def test_a_higher_temperature_moves_q_mass_off_the_diagonal(run_cli, place, tmp_path):
    off_diagonal = []
    for temperature in ("1", "4"):
        out = tmp_path / f"t{temperature}.q.safetensors"
        args = ("--from-teacher", "--temperature", temperature, "--out", out)
        code, _, stderr = run_cli("export-q", place["onehot"], *args)
        assert code == 0, stderr
        off_diagonal.append(1 - QMatrix.load(out).probabilities().diag().mean().item())
    assert off_diagonal[1] > off_diagonal[0]


def test_inspect_q_with_heatmap_and_confusion(run_cli, place, tmp_path):
    png = tmp_path / "plots" / "q.png"
    code, stdout, stderr = run_cli(
        "inspect-q", place["q"], "--top", "3", "--heatmap", png, "--vs-confusion", place["lls"]
    )
    assert code == 0, stderr
    assert "dense Q, K=10" in stdout and "run_smoothing=lls" in stdout
    assert "top-3" in stdout and "p(self)" in stdout and "Shirt" in stdout and "row entropy" in stdout
    assert "Spearman ρ =" in stdout and "top-1 agreement" in stdout and "most often mistaken for" in stdout
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300


def test_transfer_q_subsets_and_sparse_forms(run_cli, place, tmp_path):
    q = QMatrix.load(place["q"])
    tops = tmp_path / "tops.q.safetensors"
    code, _, stderr = run_cli("transfer-q", place["q"], "--classes", "T-shirt/top,Pullover,Coat,Shirt", "--out", tops)
    assert code == 0, stderr
    sub = QMatrix.load(tops)
    kept = [0, 2, 4, 6]
    assert sub.class_names == ["T-shirt/top", "Pullover", "Coat", "Shirt"] and sub.source == "subset"
    assert torch.equal(sub.logits, q.logits[kept][:, kept])
    assert json.loads(sub.extra["parent_classes"]) == kept and sub.extra["parent"] == str(place["q"])

    by_index = tmp_path / "two.q.safetensors"
    assert run_cli("transfer-q", place["q"], "--class-indices", "6,0", "--out", by_index)[0] == 0
    assert QMatrix.load(by_index).class_names == ["Shirt", "T-shirt/top"]

    sparse_file = tmp_path / "top3.q.safetensors"
    assert run_cli("transfer-q", place["q"], "--top-n", "3", "--out", sparse_file)[0] == 0
    sparse = QMatrix.load(sparse_file)
    assert sparse.is_sparse and sparse.sparse.n == 3 and sparse.source == "sparse"
    torch.testing.assert_close(sparse.targets(torch.arange(10)).diagonal(), q.targets(torch.arange(10)).diagonal())

    # every command takes the sparse file too
    code, stdout, stderr = run_cli("inspect-q", sparse_file, "--top", "5", "--vs-confusion", place["lls"])
    assert code == 0, stderr
    assert "sparse top-3 Q" in stdout and "listing 3 per class" in stdout and "Spearman" in stdout
    sparse_tops = tmp_path / "sparse-tops.q.safetensors"
    code, _, stderr = run_cli("transfer-q", sparse_file, "--classes", "Shirt,Coat,Pullover", "--out", sparse_tops)
    assert code == 0, stderr
    assert QMatrix.load(sparse_tops).sparse.n == 2


def test_existing_outputs_need_force(run_cli, place, tmp_path):
    out = tmp_path / "q.safetensors"
    out.write_bytes(b"precious")
    code, _, stderr = run_cli("export-q", place["lls"], "--out", out)
    assert code == 2 and "--force" in stderr and out.read_bytes() == b"precious"
    png = tmp_path / "q.png"
    png.write_bytes(b"precious")
    code, _, stderr = run_cli("inspect-q", place["q"], "--heatmap", png)
    assert code == 2 and "--force" in stderr and png.read_bytes() == b"precious"
    code, _, stderr = run_cli("export-q", place["lls"], "--out", out, "--force")  # not kdtool's file
    assert code == 2 and "not a file kdtool wrote" in stderr and out.read_bytes() == b"precious"
    out.unlink()
    assert run_cli("export-q", place["lls"], "--out", out)[0] == 0
    assert run_cli("export-q", place["lls"], "--out", out, "--force")[0] == 0
    assert QMatrix.load(out).source == "lls"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export-q", "{root}/nope", "--out", "{out}"], "does not exist"),
        (["export-q", "{onehot}", "--out", "{out}"], "learned no Q (smoothing=onehot)"),
        (["export-q", "{lls}", "--alpha", "0.2", "--out", "{out}"], "--alpha applies only with --from-teacher"),
        (["export-q", "{onehot}", "--from-teacher", "--alpha", "1.5", "--out", "{out}"], "--alpha must be in (0, 1)"),
        (["export-q", "{lls}", "--temperature", "2", "--out", "{out}"], "used with --from-teacher only"),
        (
            ["export-q", "{onehot}", "--from-teacher", "--temperature", "0", "--out", "{out}"],
            "--temperature must be positive",
        ),
        (["export-q", "{lls}"], "Missing option '--out'"),
        (["transfer-q", "{q}", "--classes", "Shirt,Jacket", "--out", "{out}"], "unknown class 'Jacket'"),
        (["transfer-q", "{q}", "--classes", "Shirt,Shirt", "--out", "{out}"], "listed twice"),
        (["transfer-q", "{q}", "--classes", "Shirt,Coat", "--class-indices", "1,2", "--out", "{out}"], "either by"),
        (["transfer-q", "{q}", "--class-indices", "1,x", "--out", "{out}"], "comma-separated integers"),
        (["transfer-q", "{q}", "--top-n", "10", "--out", "{out}"], "top-N must be between 1 and 9"),
        (["transfer-q", "{q}", "--out", "{out}"], "nothing to do"),
        (["transfer-q", "{pickle}", "--top-n", "2", "--out", "{out}"], "never unpickles"),
        (["inspect-q", "{pickle}"], "never unpickles"),
        (["inspect-q", "{q}", "--top", "0"], "at least 1"),
        (["inspect-q", "{foreign}", "--vs-confusion", "{lls}", "--heatmap", "{out}.png"], "not among the run's"),
        (["inspect-q", "{q}", "--vs-confusion", "{root}/nope", "--heatmap", "{out}.png"], "does not exist"),
    ],
)
def test_errors_exit_2_with_one_line_and_write_nothing(run_cli, place, tmp_path, args, message):
    values = {key: str(value) for key, value in place.items()}
    args = [a.format(**values, out=tmp_path / "new" / "out.file") for a in args]
    code, _, stderr = run_cli(*args)
    assert code == 2
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["export-q", "inspect-q", "transfer-q"])
def test_help_shows_examples(run_cli, command):
    code, stdout, _ = run_cli(command, "--help")
    assert code == 0 and "Examples" in stdout and f"kdtool {command}" in stdout
