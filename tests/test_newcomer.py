"""A newcomer's first hour (issue #23 items 3, 4, 6, 9; issue #15 item 4): an unavailable device is one line,
output survives narrow terminals and pipes, figures agree with each other, evaluate says where it wrote,
and compare names the epoch it reports."""

import csv
import io
import json
import re

import pytest
import torch
from rich.console import Console

from kdtool.cli import main
from kdtool.distributed import select_device
from kdtool.errors import KdtoolError
from kdtool.q.matrix import QMatrix
from kdtool.reporting.display import EpochDisplay, short_sci
from tests.conftest import TINY

SHA = "9f2c" + "0123456789abcdef" * 3 + "7d1e5a0b3c4f"  # 64 hex digits, as in config.json's sha256 fields


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny trained LLS run."""
    root = tmp_path_factory.mktemp("newcomer")
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in ("train-teacher", *TINY, "--out", root / "lls")])
    assert info.value.code == 0
    return root / "lls"


def write_run(path, config, rows, columns=("epoch", "test_acc", "test_nll", "test_ece", "seconds")):
    """A finished run as compare reads it: config.json, metrics.csv and an (empty) weights file."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"epochs": len(rows), **config}))
    (path / "model.safetensors").write_bytes(b"")
    (path / "metrics.csv").write_text("\n".join([",".join(columns), *(",".join(map(str, r)) for r in rows)]) + "\n")


# --- item 3: an unavailable device ---------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
@pytest.mark.parametrize("seeds", [(), ("--seeds", "0,1")])
def test_device_cuda_without_a_gpu_is_one_line_exit_2_and_creates_nothing(run_cli, tmp_path, seeds):
    code, _, err = run_cli("train-teacher", *TINY, "--device", "cuda", *seeds, "--out", tmp_path / "run")
    assert code == 2
    assert err.startswith("error: --device cuda: no CUDA device here") and err.count("\n") == 1
    assert "Traceback" not in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("cuda:x", "unknown --device 'cuda:x'"),
        ("gpu", "unknown --device 'gpu'"),
        ("meta", "kdtool does not train on 'meta' devices"),
    ],
)
def test_malformed_devices_are_refused(name, message):
    with pytest.raises(KdtoolError, match=re.escape(message)):
        select_device(name)


def test_a_gpu_index_beyond_the_machine_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert select_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(KdtoolError, match=re.escape("--device cuda:3: this machine has 1 CUDA device (cuda:0)")):
        select_device("cuda:3")
    with pytest.raises(KdtoolError, match="has 1 CUDA device"):  # under torchrun: rank 2's GPU
        select_device("cuda", local_rank=2)


def test_mps_without_apple_silicon_is_refused(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(KdtoolError, match="MPS backend is not available"):
        select_device("mps")


# --- item 4: narrow terminals and pipes ---------------------------------------------------------------------

ROW = {"epoch": 1, "lr_mean": 0.1, "train_loss": 1.8271, "train_acc": 0.125, "test_acc": 0.2534,
       "test_macro_f1": 0.0222, "test_nll": 2.2936, "test_ece": 0.0122, "seconds": 2.0}  # fmt: skip


def _epoch_table(width: int) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=True, color_system=None)
    display = EpochDisplay(console, "lls · lenet5 · fashion-mnist (256 train / 128 test)", 2, 4)
    display.epoch_done(ROW)
    display.epoch_done({**ROW, "epoch": 2, "lr_mean": 0.0025})
    console.print(display.table)
    return buffer.getvalue()


def test_the_epoch_table_at_60_columns_shows_whole_numbers_and_hides_columns_instead():
    text = _epoch_table(60)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 60
    for number in ("25.34%", "2.2936", "0.0222", "0.0122", "1.8271"):  # test acc, NLL, macro-F1, ECE, train loss
        assert number in text
    assert "macro" in text and "not shown at this width: mean lr, train acc, s" in text


def test_the_epoch_table_at_80_columns_shows_every_column_and_lr_in_short_form():
    text = _epoch_table(80)
    assert "…" not in text and "not shown" not in text
    assert "1e-1" in text and "2.5e-3" in text and "12.50%" in text and "macro" in text
    assert [short_sci(v) for v in (0.1, 0.05, 0.0025, 1.0, 0.0)] == ["1e-1", "5e-2", "2.5e-3", "1e0", "0"]


def test_piped_compare_keeps_every_cell_and_sha256_on_one_line(run_cli, tmp_path):
    metrics = ("epoch", "test_acc", "test_macro_f1", "test_nll", "test_ece", "seconds")
    for seed, acc in enumerate((0.8, 0.9)):
        config = {"smoothing": "lls-st", "seed": seed, "q_artifact": {"path": "/far/away/q.safetensors", "sha256": SHA}}
        write_run(tmp_path / "runs" / f"seed{seed}", config, [(1, acc, 0.5, 1.0, 0.1, 3.0)], metrics)
    code, out, err = run_cli("compare", tmp_path / "runs", "--group-by", "q_artifact.sha256", "--metric",
                             "test_acc,test_macro_f1,test_nll,test_ece")  # fmt: skip
    assert code == 0, err
    assert any(SHA in line for line in out.splitlines())
    row = next(line for line in out.splitlines() if SHA in line)
    assert "85.00 ± 7.07" in row and "0.5000 ± 0.0000" in row and "3.0 ± 0.0" in row
    for line in out.splitlines()[1:]:  # no cell is split over lines: every ± has its numbers on both sides
        assert line.count("±") == len(re.findall(r"\d ± \d", line))


def test_piped_training_prints_plain_unwrapped_lines(run_cli, tmp_path):
    out_dir = tmp_path / ("a-long-folder-name-" * 4) / "run"
    code, out, err = run_cli("train-teacher", *TINY, "--out", out_dir)
    assert code == 0, err
    closing = next(line for line in out.splitlines() if line.startswith("epoch 1 of 1: test accuracy")
                   or line.startswith("test accuracy"))  # fmt: skip
    assert closing.endswith(f"-> run folder {out_dir}") and "test macro F1" in out
    assert f"Q written to {out_dir / 'q.safetensors'}" in out.splitlines()


# --- item 6: figures that agree --------------------------------------------------------------------------------


def _groups(names):
    import pandas as pd

    from kdtool.reporting.plots import GroupCurve

    curve = pd.DataFrame({"mean": [0.5, 0.6], "min": [0.4, 0.5], "max": [0.6, 0.7]}, index=[1, 2])
    return [GroupCurve(name, 2, curve, f"runs/{name}/seed0", None) for name in names]


def _line_colours(fig) -> dict[str, str]:
    from matplotlib.colors import to_hex

    return {line.get_label().split(" (")[0]: to_hex(line.get_color()) for ax in fig.axes for line in ax.get_lines()
            if not line.get_label().startswith("_")}  # fmt: skip


def test_a_method_keeps_its_colour_whatever_the_argument_order_and_in_every_figure():
    import pandas as pd

    from kdtool.reporting.plots import comparison_figure, dynamics_figure

    one = _line_colours(comparison_figure(_groups(["onehot", "ls", "lls"]), "test_acc"))
    other = _line_colours(comparison_figure(_groups(["lls", "onehot", "ls"]), "test_acc"))
    assert one == other and len({one[m] for m in ("onehot", "ls", "lls")}) == 3
    frame = pd.DataFrame({"mean": [1.0, 2.0], "min": [1.0, 2.0], "max": [1.0, 2.0]}, index=[1, 2])
    metrics = {"grad_norm": frame, "generalization_error": frame}
    dynamics = _line_colours(dynamics_figure({0.1: {"ls": metrics, "onehot": metrics}, 0.01: {"lls": metrics}}))
    assert {m: dynamics[m] for m in ("ls", "onehot", "lls")} == {m: one[m] for m in ("ls", "onehot", "lls")}


def test_curves_and_reliability_share_percent_units_and_epochs_are_integers():
    from kdtool.reporting.plots import comparison_figure

    fig = comparison_figure(_groups(["ls"]), "test_acc")
    fig.canvas.draw()
    curves, reliability = fig.axes
    assert "(%)" in curves.get_ylabel() and "(%)" in reliability.get_ylabel() and "(%)" in reliability.get_xlabel()
    assert reliability.get_xlim() == (0.0, 100.0)
    assert all(float(tick).is_integer() for tick in curves.get_xticks())


def _q_file(tmp_path):
    logits = torch.randn(6, 6, generator=torch.Generator().manual_seed(0))
    q = QMatrix(logits, [f"class{i}" for i in range(6)], 0.1, "toy", "lls")
    path = tmp_path / "toy.q.safetensors"
    q.save(path)
    return path


@pytest.mark.parametrize(("suffix", "start"), [(".pdf", b"%PDF"), (".svg", b"<?xml"), (".png", b"\x89PNG")])
def test_heatmap_format_follows_the_extension(run_cli, tmp_path, suffix, start):
    picture = tmp_path / f"q{suffix}"
    code, out, err = run_cli("inspect-q", _q_file(tmp_path), "--heatmap", picture)
    assert code == 0, err
    assert picture.read_bytes().startswith(start) and out.splitlines()[-1] == f"heatmap written to {picture}"
    if suffix == ".svg":
        assert b"<svg" in picture.read_bytes()[:1000]


def test_an_unknown_heatmap_extension_is_refused_before_any_work(run_cli, tmp_path):
    code, out, err = run_cli("inspect-q", tmp_path / "missing.q.safetensors", "--heatmap", tmp_path / "q.xyz")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "must end in .png, .pdf, .svg" in err and not (tmp_path / "q.xyz").exists()


def test_heatmap_cells_get_enough_digits_to_rank_them():
    from kdtool.reporting.qreport import cell_decimals

    assert cell_decimals([[4.0, 5.0, 30.0]]) == 0
    assert cell_decimals([[4.31, 4.36, 30.0]]) == 1
    assert cell_decimals([[4.832, 4.829, 10.0]]) == 3
    assert cell_decimals([[4.0, 4.0, 10.0]]) == 0  # equal cells need no digits to tell apart


# --- item 9: evaluate says where it wrote, and takes --out ----------------------------------------------------


def test_evaluate_names_its_figure_in_the_last_line_and_takes_out(run_cli, tiny_run, tmp_path):
    code, out, err = run_cli("evaluate", tiny_run, "--force")
    assert code == 0, err
    default = tiny_run / "confusion-test.png"
    assert out.splitlines()[-1].startswith(f"confusion matrix written to {default} (in the run folder")
    assert default.read_bytes()[:4] == b"\x89PNG"
    pdf = tmp_path / "figures" / "confusion.pdf"
    code, out, err = run_cli("evaluate", tiny_run, "--out", pdf)
    assert code == 0, err
    assert out.splitlines()[-1] == f"confusion matrix written to {pdf}" and pdf.read_bytes()[:4] == b"%PDF"
    code, _, err = run_cli("evaluate", tiny_run, "--out", tmp_path / "confusion.jpg")
    assert code == 2 and "must end in .png, .pdf, .svg" in err and not (tmp_path / "confusion.jpg").exists()


# --- issue #15 item 4: which epoch compare reports ---------------------------------------------------------------


@pytest.fixture
def selected_runs(tmp_path):
    """Two runs of 3 epochs that kept epoch 2's weights (validation selection)."""
    columns = ("epoch", "test_acc", "test_nll", "test_ece", "seconds", "selected")
    for seed, accs in enumerate(((0.5, 0.7, 0.6), (0.2680000066757202, 0.75, 0.62))):
        rows = [(e + 1, acc, 1.0 - e / 10, 0.1, 1.0, int(e == 1)) for e, acc in enumerate(accs)]
        write_run(tmp_path / "runs" / f"seed{seed}", {"smoothing": "lls", "seed": seed}, rows, columns)
    return tmp_path / "runs"


def test_compare_reports_the_selected_and_the_last_epoch_in_named_columns(run_cli, selected_runs):
    code, out, err = run_cli("compare", selected_runs, "--format", "markdown")
    assert code == 0, err
    header, _, row = out.splitlines()
    cells = dict(zip(header.strip("| ").split(" | "), row.strip("| ").split(" | "), strict=True))
    assert cells["test_acc % selected"] == "72.50 ± 3.54" and cells["test_acc % last"] == "61.00 ± 1.41"
    assert cells["epoch selected"] == "2" and cells["epoch last"] == "3"
    assert cells["test_nll selected"] == "0.9000 ± 0.0000" and cells["test_nll last"] == "0.8000 ± 0.0000"
    code, out, err = run_cli("compare", selected_runs)
    assert code == 0, err
    assert "selected: the epoch whose weights a run kept" in out and "last: the last epoch it trained" in out


def test_compare_csv_uses_the_tables_units_and_precision(run_cli, selected_runs):
    code, out, err = run_cli("compare", selected_runs, "--format", "csv")
    assert code == 0, err
    assert "0.268000006" not in out and "66757202" not in out
    row = next(csv.DictReader(io.StringIO(out)))
    assert row["selected_test_acc_pct_mean"] == "72.5" and row["last_test_acc_pct_mean"] == "61.0"
    assert row["best_test_acc_pct_mean"] == "72.5" and row["selected_epoch_mean"] == "2.0"
    assert all(len(value.partition(".")[2]) <= 4 for value in row.values())


# -- item 5: help text that can be pasted ------------------------------------------------------------
def test_help_shows_examples_verbatim_and_human_metavars(run_cli):
    code, stdout, _ = run_cli("train-teacher", "--help")
    assert code == 0 and "OUT/seed<N>" in stdout
    # an example written over two source lines prints as one command on one line
    assert ("  kdtool train-teacher --dataset text:./my_data --model textcnn --word-vectors glove.6B.100d.txt "
            "--embed-dim 100 --out runs/mine\n") in stdout  # fmt: skip
    assert "<bool>" not in stdout and "<int>" not in stdout and "--epochs" in stdout
    code, stdout, _ = run_cli("export-q", "--help")
    assert "kdtool export-q [OPTIONS] RUN" in stdout and "{run}" not in stdout
    code, stdout, _ = run_cli("compare", "--help")
    assert "kdtool compare [OPTIONS] RUNS..." in stdout and "list[Path]" not in stdout


# -- item 7: names and units that agree -----------------------------------------------------------
def test_make_prior_takes_word_vectors_like_train_teacher(run_cli, tmp_path):
    vectors = tmp_path / "v.txt"
    vectors.write_text("cat 0 0\ndog 3 0\nsea 0 3\n")
    labels = tmp_path / "text"
    labels.mkdir()
    for split in ("train", "test"):
        (labels / f"{split}.tsv").write_text("cat\ta\ndog\tb\nsea\tc\n")
    for flag in ("--word-vectors", "--label-vectors"):  # the older name still works
        out = tmp_path / f"p{flag}.q.safetensors"
        code, _, stderr = run_cli("make-prior", "semantic", "--dataset", f"text:{labels}", flag, vectors, "--out", out)
        assert code == 0, stderr
        assert QMatrix.load(out).extra["label_vectors"] == "v.txt"


def test_evaluate_takes_class_indices_like_distill(run_cli, tiny_run, tmp_path):
    code, stdout, stderr = run_cli("evaluate", tiny_run, "--class-indices", "0,2", "--out", tmp_path / "c.png")
    assert code == 0, stderr
    assert "2 classes" in stdout and "T-shirt/top" in stdout and "Pullover" in stdout and "Trouser" not in stdout
    code, _, stderr = run_cli("evaluate", tiny_run, "--classes", "Bag", "--class-indices", "1")
    assert code == 2 and "not both" in stderr


def test_data_is_described_as_text_or_images():
    from kdtool.data import DatasetInfo

    text = DatasetInfo("goemotions-ekman", ("a", "b"), 0, 0, (), (), kind="text", vocab_size=10, max_len=5)
    image = DatasetInfo("fashion-mnist", ("a", "b"), 1, 28, (0.5,), (0.5,))
    assert text.describe() == "goemotions-ekman (text)" and image.describe() == "fashion-mnist (1×28 px images)"
