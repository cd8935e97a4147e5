"""``kdtool compare`` on hand-written run folders whose means and standard deviations are known."""

import csv
import io
import json
import statistics

import pytest

# Per run: (test_acc, test_nll, test_ece, seconds) of epoch 1 and epoch 2 (the final epoch).
ONEHOT = {
    "seed0": [(0.85, 1.5, 0.10, 10.0), (0.80, 1.0, 0.05, 20.0)],
    "seed1": [(0.70, 2.5, 0.20, 10.0), (0.82, 2.0, 0.07, 30.0)],
    "seed2": [(0.75, 3.5, 0.30, 10.0), (0.84, 3.0, 0.09, 40.0)],
}
LLS = {
    "seed0": [(0.80, 0.9, 0.02, 5.0), (0.90, 0.5, 0.01, 5.0)],
    "seed1": [(0.81, 0.8, 0.03, 5.0), (0.86, 0.7, 0.03, 5.0)],
}


def write_run(path, config, epochs, lr_column="lr_mean"):
    """A run folder as train-teacher leaves it, minus the weights: config.json and metrics.csv (``lr_column``
    "lr": as kdtool wrote it before the epoch's mean learning rate)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"epochs": len(epochs), "dataset_info": {"name": "fmnist"},
                                                  **config}))  # fmt: skip
    with open(path / "metrics.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["epoch", lr_column, "test_acc", "test_nll", "test_ece", "seconds"])
        for epoch, values in enumerate(epochs, 1):
            writer.writerow([epoch, 0.1, *values])


@pytest.fixture
def runs(tmp_path):
    for seed, (name, epochs) in enumerate(ONEHOT.items()):
        write_run(tmp_path / "onehot" / name, {"smoothing": "onehot", "alpha": 0.1, "seed": seed}, epochs)
    for seed, (name, epochs) in enumerate(LLS.items()):
        write_run(tmp_path / "lls" / name, {"smoothing": "lls", "alpha": 0.1, "seed": seed}, epochs)
    return tmp_path


def final(group, index):
    """The final-epoch value ``index`` of every run of a group."""
    return [epochs[-1][index] for epochs in group.values()]


def test_csv_holds_the_means_and_sample_stds_in_the_tables_units(run_cli, runs):
    code, out, err = run_cli("compare", runs / "onehot", runs / "lls", "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["smoothing"] for r in rows] == ["onehot", "lls"]  # order of the command line
    for row, group in zip(rows, (ONEHOT, LLS), strict=True):
        assert int(row["n"]) == len(group)
        # name: (per-run values in the table's unit, decimals the table shows)
        expected = {
            "selected_test_acc_pct": ([100 * v for v in final(group, 0)], 2),
            "last_test_acc_pct": ([100 * v for v in final(group, 0)], 2),
            "best_test_acc_pct": ([100 * max(e[0] for e in epochs) for epochs in group.values()], 2),
            "selected_test_nll": (final(group, 1), 4),
            "selected_test_ece": (final(group, 2), 4),
            "epoch_seconds": ([statistics.mean(e[3] for e in epochs) for epochs in group.values()], 1),
        }
        for name, (values, decimals) in expected.items():
            assert row[f"{name}_mean"] == str(round(statistics.mean(values), decimals))
            assert row[f"{name}_std"] == str(round(statistics.stdev(values), decimals))


def test_markdown_table_shows_mean_and_std(run_cli, runs):
    code, out, err = run_cli("compare", runs, "--format", "markdown", "--metric", "test_acc")
    assert code == 0, err
    lines = out.splitlines()
    header = "| smoothing | n | test_acc % selected = last | test_acc % best | epoch selected = last | s/epoch |"
    assert lines[0] == header
    assert lines[1] == "| :-- | --: | --: | --: | --: | --: |"
    # onehot: final 80, 82, 84 -> 82.00 ± 2.00; best 85, 82, 84; seconds 15, 20, 25 -> 20.0 ± 5.0
    best = [85, 82, 84]
    best_cell = f"{statistics.mean(best):.2f} ± {statistics.stdev(best):.2f}"
    onehot = f"| onehot | 3 | 82.00 ± 2.00 | {best_cell} | 2 | 20.0 ± 5.0 |"
    assert onehot in lines
    assert "| lls | 2 | 88.00 ± 2.83 | 88.00 ± 2.83 | 2 | 5.0 ± 0.0 |" in lines  # stdev(90, 86) = 2.828...


def test_group_by_any_config_key_and_single_runs(run_cli, runs, tmp_path):
    write_run(tmp_path / "alpha" / "a3", {"smoothing": "lls", "alpha": 0.3, "seed": 0}, LLS["seed0"])
    code, out, err = run_cli("compare", runs / "lls", tmp_path / "alpha", "--group-by", "alpha", "--format",
                             "markdown", "--metric", "test_nll")  # fmt: skip
    assert code == 0, err
    assert "| 0.1 | 2 | 0.6000 ± 0.1414 | 2 | 5.0 ± 0.0 |" in out
    assert "| 0.3 | 1 | 0.5000 | 2 | 5.0 |" in out  # one run: no spread to show


def test_a_group_mixing_options_gets_a_note(run_cli, runs, tmp_path):
    write_run(tmp_path / "more" / "lls-a3", {"smoothing": "lls", "alpha": 0.3, "seed": 7}, LLS["seed1"])
    code, out, err = run_cli("compare", runs / "lls", tmp_path / "more", "--format", "csv", "--group-by", "smoothing")
    assert code == 0, err
    assert "group lls also differ in alpha" in err and "note" not in out  # stdout stays a clean CSV
    code, out, err = run_cli("compare", runs / "lls", tmp_path / "more")  # by default, alpha makes its own group
    assert code == 0 and "differ" not in err and "alpha" in out


def test_unfinished_runs_are_left_out_with_a_note(run_cli, runs):
    config = json.loads((runs / "lls" / "seed1" / "config.json").read_text())
    (runs / "lls" / "seed1" / "config.json").write_text(json.dumps({**config, "epochs": 5}))
    code, out, err = run_cli("compare", runs / "lls", "--format", "csv")
    assert code == 0, err
    assert "left out 1 unfinished" in err and "seed1" in err
    assert next(csv.DictReader(io.StringIO(out)))["n"] == "1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--group-by", "smoothnig"], "unknown --group-by key 'smoothnig'; did you mean smoothing"),
        (["--metric", "test_f1"], "metric 'test_f1' is not in"),
        (["--format", "html"], "unknown --format 'html'"),
    ],
)
def test_bad_options_are_one_line_errors(run_cli, runs, args, message):
    code, out, err = run_cli("compare", runs, *args)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_paths_that_are_not_runs_are_refused(run_cli, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli("compare", tmp_path / "empty")
    assert code == 2 and "is not a run folder: no config.json" in err
    code, _, err = run_cli("compare", tmp_path / "missing")
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli("compare")
    assert code == 2 and "Missing argument" in err


def test_plot_without_weights_draws_the_curves_and_refuses_to_overwrite(run_cli, runs, tmp_path):
    png = tmp_path / "plots" / "curves.png"
    code, out, err = run_cli("compare", runs, "--plot", png)
    assert "plot written to" in out
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "left out of the reliability diagram" in err  # hand-written runs have no model.safetensors
    code, _, err = run_cli("compare", runs, "--plot", png)
    assert code == 2 and "already exists: pass --force" in err
    assert run_cli("compare", runs, "--plot", png, "--force")[0] == 0


def test_selected_and_last_epoch_and_early_stopped_runs_count(run_cli, tmp_path):
    # a run of 5 planned epochs that stopped after 3 and kept epoch 2's weights
    run = tmp_path / "early"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"epochs": 5, "smoothing": "lls"}))
    (run / "model.safetensors").write_bytes(b"")
    rows = ["epoch,test_acc,test_nll,test_ece,seconds,selected", "1,0.5,1.0,0.1,1,0", "2,0.7,0.8,0.2,1,1",
            "3,0.6,0.9,0.3,1,0"]  # fmt: skip
    (run / "metrics.csv").write_text("\n".join(rows) + "\n")
    code, out, err = run_cli("compare", run, "--format", "csv")
    assert code == 0, err
    row = next(csv.DictReader(io.StringIO(out)))
    assert float(row["selected_test_acc_pct_mean"]) == 70.0 and float(row["selected_test_nll_mean"]) == 0.8
    assert float(row["last_test_acc_pct_mean"]) == 60.0 and float(row["last_test_nll_mean"]) == 0.9
    assert float(row["selected_epoch_mean"]) == 2 and float(row["last_epoch_mean"]) == 3
    assert float(row["best_test_acc_pct_mean"]) == 70.0 and "unfinished" not in err


def test_a_run_named_twice_counts_once(run_cli, runs):
    code, out, err = run_cli("compare", runs / "lls" / "seed1", runs / "lls", "--format", "csv", "--metric", "test_acc")
    assert code == 0, err
    assert next(csv.DictReader(io.StringIO(out)))["n"] == "2"


def test_the_learning_rate_is_named_the_epochs_mean_and_older_runs_lr_still_reads(tmp_path):
    from kdtool.reporting import compare, htmlreport
    from kdtool.reporting.plots import curves_figure, metric_label

    write_run(tmp_path / "new", {"smoothing": "ls"}, ONEHOT["seed0"])
    write_run(tmp_path / "old", {"smoothing": "onehot"}, ONEHOT["seed1"], lr_column="lr")
    found = compare.load_runs(compare.find_runs([tmp_path / "new", tmp_path / "old"]))
    curves = htmlreport._curves(found, ["smoothing"])
    assert {"lr_mean", "lr"} <= set(curves)  # the learning-rate panel draws both
    assert list(curves["lr_mean"]) == ["ls"] and list(curves["lr"]) == ["onehot"]
    figure = curves_figure(curves)
    titled = [ax for ax in figure.axes if ax.get_title() == "learning rate"]
    assert [text.get_text() for text in titled[0].get_legend().get_texts()] == ["ls · lr_mean", "onehot · lr"]
    assert metric_label("lr_mean") == "mean learning rate of the epoch"
    assert metric_label("lr") == "learning rate at the epoch's first step"
    # the per-epoch tables write either in 3 digits (a small rate is not 0.0000), and a blank cell blank
    assert [htmlreport._number(c, "3.75e-05") for c in ("lr_mean", "lr")] == ["3.75e-05", "3.75e-05"]
    assert htmlreport._number("lr_mean", "") == ""
