"""A newcomer's second hour (issue #32 items 2-4, 6-13): runs made by kdtool.fit in the reports, compare groups,
--resume lines, typo suggestions, messages that point the right way, help examples that run, pictures."""

import csv
import io
import json
import re

import pytest
import torch
from torch import nn

import kdtool
from kdtool.reporting import compare as cmp
from tests.conftest import TINY


class MyNet(nn.Module):
    """A module kdtool cannot rebuild from its name (python:MyNet)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


@pytest.fixture(scope="module")
def fit_run(tmp_path_factory):
    """A two-epoch LLS run of kdtool.fit on random 8×8 images."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (192, 1, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.arange(192) % 10
    out = tmp_path_factory.mktemp("fit") / "mynet"
    kdtool.fit(MyNet(), (images[:128], labels[:128]), (images[128:], labels[128:]), epochs=2, out=out, quiet=True,
               batch_size=64, device="cpu")  # fmt: skip
    return out


# --- item 6: runs made by kdtool.fit -------------------------------------------------------------------------


def test_report_of_a_fit_run_shows_the_run_folder_and_leaves_the_network_sections_out(run_cli, fit_run, tmp_path):
    code, _, err = run_cli("report", fit_run, "--out", tmp_path / "r.html")
    assert code == 0, err
    page = (tmp_path / "r.html").read_text()
    assert "Curves" in page and "Per-epoch metrics" in page and "Q: class similarity" in page
    assert "Reliability diagram on the test set" not in page
    assert "left out: they need the network, and python:MyNet is a module of your own" in page


def test_compare_plot_of_a_fit_run_draws_the_curves_and_notes_the_reliability_left_out(run_cli, fit_run, tmp_path):
    code, _, err = run_cli("compare", fit_run, "--plot", tmp_path / "c.png")
    assert code == 0, err
    assert (tmp_path / "c.png").stat().st_size > 0
    assert "group lls is left out of the reliability diagram" in err
    assert "python:MyNet is a module of your own (trained by kdtool.fit)" in err


@pytest.mark.parametrize(
    "args, needs",
    [(("inspect-q", "{run}", "--vs-confusion", "{run}"), "--vs-confusion"),
     (("export-q", "{run}", "--from-teacher", "--out", "{tmp}/t.q.safetensors"), "--from-teacher")],
)  # fmt: skip
def test_what_needs_a_fit_runs_network_says_so_in_one_line(run_cli, fit_run, tmp_path, args, needs):
    code, _, err = run_cli(*(a.format(run=fit_run, tmp=tmp_path) for a in args))
    assert code == 2
    assert err.startswith(f"error: {needs} needs the network of {fit_run}, and python:MyNet is a module of your own")
    assert err.count("\n") == 1 and "load_state_dict" in err


# --- item 4: compare groups by every result-changing option ---------------------------------------------------


def write_run(path, config, accuracy):
    """A finished one-epoch run as compare reads it: config.json, metrics.csv and an (empty) weights file."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"epochs": 1, "out": str(path), **config}))
    (path / "model.safetensors").write_bytes(b"")
    (path / "metrics.csv").write_text(f"epoch,test_acc,test_nll,test_ece,seconds\n1,{accuracy},1.0,0.1,2\n")


def test_compare_separates_runs_that_differ_in_a_result_changing_option_and_labels_them(run_cli, tmp_path):
    students = {"plain": {"teacher": "runs/t", "logit_standardize": False},
                "standardized": {"teacher": "runs/t", "logit_standardize": True},
                "cached": {"teacher_cache": "t.kdcache", "logit_standardize": False}}  # fmt: skip
    for name, options in students.items():
        for seed in (0, 1):
            config = {"kind": "distill", "smoothing": "kd", "kd_loss": "kd", "seed": seed, "device": f"cuda:{seed}",
                      **options}  # fmt: skip
            write_run(tmp_path / name / f"seed{seed}", config, 0.5 + 0.1 * seed)
    for seed in (0, 1):
        write_run(tmp_path / "lls" / f"seed{seed}", {"smoothing": "lls", "alpha": 0.1, "seed": seed}, 0.5)
    code, out, err = run_cli("compare", tmp_path, "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert "alpha" not in rows[0]  # an option of one method alone does not split the others from it
    assert [(r["smoothing"], r["logit_standardize"], r["teacher"], r["teacher_cache"], r["n"]) for r in rows] == [
        ("kd", "False", "-", "t.kdcache", "2"),
        ("lls", "-", "-", "-", "2"),
        ("kd", "False", "runs/t", "-", "2"),
        ("kd", "True", "runs/t", "-", "2"),
    ]
    assert "differ" not in err  # seeds and devices do not change what is compared
    found = cmp.load_runs(cmp.find_runs([tmp_path]))
    assert list(cmp.groups(found, cmp.check_group_keys(found, None))) == [
        "kd · logit_standardize=False · teacher_cache=t.kdcache",
        "lls",
        "kd · logit_standardize=False · teacher=runs/t",
        "kd · logit_standardize=True · teacher=runs/t",
    ]  # how the figures' legends name them
    code, _, err = run_cli("compare", tmp_path, "--group-by", "smoothing")  # one group, as asked, with a note
    assert code == 0
    assert "note: the runs of group kd also differ in teacher_cache, logit_standardize, teacher;" in err


# --- item 10: --resume says where it continues -------------------------------------------------------------

TWO_EPOCHS = ("--limit-train", "128", "--limit-test", "64", "--epochs", "2", "--batch-size", "64", "--smoothing", "ls")


def epoch_rows(out: str) -> list[int]:
    """The epochs of the table a run printed (plain lines into a pipe)."""
    return [int(m) for m in re.findall(r"^│\s+(\d+)\s+│", out, flags=re.MULTILINE)]


def test_resume_says_after_which_epoch_and_shows_only_the_epochs_it_trains(run_cli, tmp_path, interrupt_at_epoch):
    interrupt_at_epoch(1)
    assert run_cli("train-teacher", *TWO_EPOCHS, "--out", tmp_path / "run")[0] == 130
    interrupt_at_epoch(None)
    code, out, err = run_cli("train-teacher", *TWO_EPOCHS, "--out", tmp_path / "run", "--resume")
    assert code == 0, err
    assert f"resuming {tmp_path / 'run'} after epoch 1 of 2 (its checkpoint)" in out
    assert epoch_rows(out) == [2]


def test_resume_of_a_finished_run_says_it_is_complete_and_trains_nothing(run_cli, tmp_path):
    assert run_cli("train-teacher", *TWO_EPOCHS, "--out", tmp_path / "run")[0] == 0
    weights = (tmp_path / "run" / "model.safetensors").stat().st_mtime_ns
    code, out, err = run_cli("train-teacher", *TWO_EPOCHS, "--out", tmp_path / "run", "--resume")
    assert code == 0, err
    assert out == f"{tmp_path / 'run'}: already complete (2 of 2 epochs), nothing to resume; --force retrains it\n"
    assert (tmp_path / "run" / "model.safetensors").stat().st_mtime_ns == weights


def test_a_seeds_rerun_announces_the_seed_it_resumes(run_cli, tmp_path, interrupt_at_epoch):
    assert run_cli("train-teacher", *TWO_EPOCHS, "--seeds", "0", "--out", tmp_path / "s")[0] == 0
    interrupt_at_epoch(1)
    assert run_cli("train-teacher", *TWO_EPOCHS, "--seeds", "0,1", "--out", tmp_path / "s")[0] == 130
    interrupt_at_epoch(None)
    code, out, err = run_cli("train-teacher", *TWO_EPOCHS, "--seeds", "0,1", "--out", tmp_path / "s")
    assert code == 0, err
    assert "[1/2] seed 0: finished earlier, skipped" in out
    assert f"resuming {tmp_path / 's' / 'seed1'} after epoch 1 of 2 (its checkpoint)" in out
    assert epoch_rows(out) == [2]


# --- item 8: typos get a suggestion everywhere ---------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [(("train-teacher", "--dataset", "fmnist"), "unknown dataset 'fmnist' (did you mean fashion-mnist or mnist?)"),
     (("train-teacher", "--dataset", "fashion_mnist"), "unknown dataset 'fashion_mnist' (did you mean fashion-mnist?)"),
     (("train-teacher", "--smoothing", "LLS"), "unknown smoothing method 'LLS' (did you mean lls?)"),
     (("train-teacher", "--schedule", "cosin"), "unknown --schedule 'cosin' (did you mean cosine?)"),
     (("train-teacher", "--model", "lenet"), "unknown model 'lenet' (did you mean lenet5?)"),
     (("distill", "--teacher", "t", "--kd-loss", "DKD"), "unknown --kd-loss 'DKD' (did you mean dkd?)"),
     (("compare", ".", "--format", "csvv"), "unknown --format 'csvv' (did you mean csv?)"),
     (("distill", "--teacher", "t", "--model", "lenet5"), "No such option: --model (did you mean --student?"),
     (("train-teacher", "--student", "lenet5"), "--student (did you mean --model? --student is an option of kdtool "
                                                "distill)"),
     (("train-teacher", "--smoothin", "lls"), "No such option: --smoothin (did you mean --smoothing?)")],
)  # fmt: skip
def test_a_typo_gets_a_suggestion(run_cli, tmp_path, args, message):
    run = () if args[0] == "compare" else (*TINY, "--out", tmp_path / "run")
    code, _, err = run_cli(*args, *run)
    assert code == 2
    assert message in err and err.count("\n") == 1


# --- item 9: messages that point the right way -----------------------------------------------------------


def test_compare_of_a_file_says_it_is_a_file(run_cli, tmp_path):
    (tmp_path / "notq.txt").write_text("hello")
    code, _, err = run_cli("compare", tmp_path / "notq.txt")
    assert code == 2
    assert err == f"error: {tmp_path / 'notq.txt'} is a file, not a run folder: name folders holding config.json\n"


def test_a_missing_imagefolder_says_it_does_not_exist(run_cli, tmp_path):
    code, _, err = run_cli("train-teacher", *TINY, "--dataset", f"imagefolder:{tmp_path}/none", "--out", tmp_path / "r")
    assert code == 2
    assert err == f"error: imagefolder:{tmp_path}/none: {tmp_path}/none does not exist\n"


def test_a_file_in_the_way_of_out_is_named_as_a_file(run_cli, tmp_path):
    (tmp_path / "afile").write_text("mine")
    code, _, err = run_cli("train-teacher", *TINY, "--out", tmp_path / "afile" / "run")
    assert code == 2
    assert err == f"error: cannot write --out {tmp_path}/afile/run: {tmp_path}/afile is a file, not a folder\n"


def test_memory_budget_on_a_builtin_dataset_names_the_dataset(run_cli, tmp_path):
    code, _, err = run_cli("train-teacher", *TINY, "--memory-budget", "1GB", "--out", tmp_path / "r")
    assert code == 2
    assert err.startswith("error: --memory-budget does not apply to this run (--dataset fashion-mnist, --loader auto)")


def test_a_q_of_other_size_names_the_counts_and_classes(run_cli, tmp_path):
    from kdtool.q.matrix import QMatrix

    QMatrix(torch.zeros(5, 5), [str(k) for k in range(5)], 0.1, "five", "test").save(tmp_path / "five.q.safetensors")
    code, _, err = run_cli("distill", "--substitute-q", tmp_path / "five.q.safetensors", *TINY, "--out", tmp_path / "s")
    assert code == 2
    assert "has 5 classes and the data 10: pass --classes with 5 of the data's classes" in err


def test_force_is_not_suggested_where_it_would_be_refused_and_every_foreign_file_is_named(run_cli, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    code, _, err = run_cli("train-teacher", *TINY, "--out", mine)
    assert code == 2 and "--force replaces only kdtool runs" in err and "pass --force" not in err
    assert run_cli("train-teacher", *TINY, "--out", tmp_path / "run")[0] == 0
    for name in ("a.txt", "b.txt", "c.txt", "d.txt"):
        (tmp_path / "run" / name).write_text("mine")
    code, _, err = run_cli("train-teacher", *TINY, "--out", tmp_path / "run", "--force")
    assert code == 2 and "holds 'a.txt', 'b.txt', 'c.txt' and 1 more, which kdtool did not write" in err
    code, _, err = run_cli("train-teacher", *TINY, "--out", tmp_path / "run")
    assert code == 2 and "pass --force" not in err and "which kdtool did not write" in err


# --- item 11: help that says what the option does, and lists that are lists ------------------------------------


def test_seeds_with_an_empty_item_is_refused(run_cli, tmp_path):
    code, _, err = run_cli("train-teacher", *TINY, "--seeds", "0,,1", "--out", tmp_path / "s")
    assert code == 2
    assert err == "error: --seeds takes comma-separated integers, got '0,,1'\n" and not (tmp_path / "s").exists()


def option_help(command: str, flag: str) -> str:
    import typer.main

    from kdtool.cli import app

    params = typer.main.get_command(app).commands[command].params
    return next(p.help for p in params if flag in p.opts)


def test_option_help_says_what_the_option_does_for_its_command():
    assert option_help("report", "--force") == "Replace an existing report page (one kdtool wrote)."
    assert option_help("import", "--seed") == "Seed that picks the --limit-test sample (import trains nothing)."
    assert "(not with --seed)" in option_help("train-teacher", "--seeds")  # the two are refused together


def test_a_one_view_cache_says_view(run_cli, tmp_path):
    assert run_cli("train-teacher", *TINY, "--smoothing", "onehot", "--out", tmp_path / "t")[0] == 0
    cache = tmp_path / "t.cache.safetensors"
    code, out, err = run_cli("cache-teacher", tmp_path / "t", "--views", "1", "--limit-train", "256", "--out", cache)
    assert code == 0, err
    assert ": 1 view of 256 samples" in out


# --- item 13: pictures -------------------------------------------------------------------------------------------


def cielab(colour: str) -> torch.Tensor:
    """An sRGB colour (``#rrggbb`` or a matplotlib name) in CIELAB (D65)."""
    from matplotlib.colors import to_rgb

    c = torch.tensor(to_rgb(colour), dtype=torch.float64)
    linear = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    to_xyz = torch.tensor([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]],
                          dtype=torch.float64)  # fmt: skip
    xyz = to_xyz @ linear / torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)
    f = torch.where(xyz > 0.008856, xyz ** (1 / 3), 7.787 * xyz + 16 / 116)
    return torch.stack([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def deuteranope(colour: str) -> str:
    """``colour`` as a deuteranope sees it: Machado, Oliveira & Fernandes (2009), severity 1.0 (sRGB linear)."""
    from matplotlib.colors import to_hex, to_rgb

    c = torch.tensor(to_rgb(colour), dtype=torch.float64)
    linear = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    seen = (torch.tensor([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                          [-0.011820, 0.042940, 0.968881]], dtype=torch.float64) @ linear).clamp(0, 1)  # fmt: skip
    return to_hex(torch.where(seen <= 0.0031308, 12.92 * seen, 1.055 * seen ** (1 / 2.4) - 0.055).tolist())


def closest_pair(colours: list[str]) -> float:
    return min(float((cielab(a) - cielab(b)).norm()) for i, a in enumerate(colours) for b in colours[i + 1 :])


def test_every_method_has_a_colour_far_from_every_other_also_for_a_deuteranope():
    from kdtool.config.runconfig import KD_LOSSES, SMOOTHING_METHODS
    from kdtool.reporting.plots import method_colours

    colours = list(method_colours([*SMOOTHING_METHODS, *KD_LOSSES, "lls-st"]).values())
    assert closest_pair(colours) >= 20  # CIE76 ΔE: 2.3 is a just-noticeable difference
    assert closest_pair([deuteranope(c) for c in colours]) >= 15


def test_compare_plot_gives_each_method_its_own_colour_line_style_and_marker():
    import pandas as pd

    from kdtool.reporting.plots import GroupCurve, comparison_figure

    curve = pd.DataFrame({"mean": [0.5, 0.6], "min": [0.4, 0.5], "max": [0.6, 0.7]}, index=[1, 2])
    groups = [GroupCurve(name, 2, curve, f"runs/{name}", None) for name in ("dist", "lls-st", "kd", "lls", "ls")]
    lines = [line for line in comparison_figure(groups, "test_acc").axes[0].get_lines()]
    assert closest_pair([line.get_color() for line in lines]) >= 20  # dist and lls-st were two greens
    assert len({(line.get_linestyle(), line.get_marker()) for line in lines}) == len(groups)


def test_a_one_run_report_does_not_speak_of_groups(run_cli, tmp_path):
    from kdtool.reporting.plots import reliability_figure

    assert "best run" not in reliability_figure([], title="reliability on the test set").axes[0].get_title()
    assert run_cli("train-teacher", *TINY, "--out", tmp_path / "run")[0] == 0
    assert run_cli("report", tmp_path / "run", "--out", tmp_path / "r.html")[0] == 0
    assert "each group" not in (tmp_path / "r.html").read_text()


def test_a_near_uniform_q_heatmap_scales_its_colours_to_the_off_diagonal_range_with_one_decimal_at_ten_classes():
    from kdtool.q.matrix import QMatrix
    from kdtool.reporting.qreport import q_heatmap_figure

    logits = 0.01 * torch.arange(100, dtype=torch.float64).reshape(10, 10).sin()
    fig, _ = q_heatmap_figure(QMatrix(logits.float(), [f"c{k}" for k in range(10)], 0.1, "near", "test"))
    ax = fig.axes[0]
    low, high = ax.images[0].norm.vmin, ax.images[0].norm.vmax
    assert 9.8 < low < 10.0 < high < 10.2  # every off-diagonal cell near 1/K = 10%: the scale spans them alone
    assert "scale: the off-diagonal range" in fig.axes[1].get_ylabel()
    assert all(re.fullmatch(r"\d+\.\d", text.get_text()) for text in ax.texts)  # one decimal per cell at K = 10


# --- item 7: kdtool.fit(quiet=False) prints as the CLI does ----------------------------------------------------


def test_fit_into_a_pipe_prints_unwrapped_lines_and_the_closing_line(tmp_path, capsys):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (128, 1, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.arange(128) % 10
    run, _ = kdtool.fit(MyNet(), (images, labels), (images[:64], labels[:64]), epochs=1, out=tmp_path / "r",
                        batch_size=64, device="cpu")  # fmt: skip
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) > 80  # the table at its natural width, not wrapped at 80
    assert re.search(rf"^epoch 1 of 1: test accuracy [\d.]+%  .* -> run folder {re.escape(str(run.path))}$", out,
                     flags=re.MULTILINE)  # fmt: skip
    assert f"Q written to {run.path / 'q.safetensors'}" in out


# --- item 2: import says what input size it evaluates at, and what to check near chance ------------------------


def test_import_states_its_input_size_and_where_it_came_from_and_hints_near_chance(run_cli, tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    torch.save(timm.create_model("resnet10t", num_classes=10).state_dict(), tmp_path / "mine.pth")
    args = ("import", "--model", "timm:resnet10t", "--weights", tmp_path / "mine.pth", "--limit-test", "32")
    code, out, err = run_cli(*args, "--out", tmp_path / "run")
    assert code == 0, err
    lines = out.splitlines()
    assert "inputs 3×176×176 px, normalised by the model's statistics: timm's pretrained config for resnet10t; your " \
           "weights may need --input-size and --input-norm" in lines[0]  # fmt: skip
    assert any(line.startswith("note: test accuracy") and "near chance (10.00% for 10 classes): check that "
               "--input-size (176) and --input-norm (model) are those" in line for line in lines)  # fmt: skip
    code, out, err = run_cli(*args, "--input-size", "32", "--input-norm", "dataset", "--out", tmp_path / "r32")
    assert code == 0, err
    assert "inputs 3×32×32 px, normalised by the dataset's statistics: --input-size and --input-norm" in out


# --- item 3: shards remember what their images are ---------------------------------------------------------------


def test_shards_remember_channels_size_and_normalisation_and_the_use_line_is_complete(run_cli, tmp_path):
    from kdtool.data.registry import load_dataset
    from kdtool.data.shards import load_shards, use_line, write_shards

    source = load_dataset("fashion-mnist").limited(128, 64, 0)
    done = write_shards(source, tmp_path / "shards", shard_size=64)
    line = use_line(done, source)
    assert line == f'use: --dataset "wds:{tmp_path}/shards/train-{{000000..000001}}.tar" --image-size 28  ' \
                   f"(evaluation shards {tmp_path}/shards/val-000000.tar are found beside them)"  # fmt: skip
    pattern = f"wds:{tmp_path}/shards/train-{{000000..000001}}.tar"
    info = load_shards(pattern, None, None, 28, skip_bad=False).info
    assert (info.channels, info.image_size, info.mean, info.std) == (1, 28, source.info.mean, source.info.std)
    # no --image-size: the size shards.json records, not 64
    code, _, err = run_cli("train-teacher", "--dataset", pattern, *TINY, "--out", tmp_path / "r")
    assert code == 0, err
    record = json.loads((tmp_path / "r" / "config.json").read_text())
    trained = record["dataset_info"]
    assert (trained["channels"], trained["image_size"], trained["mean"]) == (1, 28, list(source.info.mean))
    assert record["image_size"] == 28


# --- item 12: numbers that depend on the machine say "about" ---------------------------------------------------


def test_the_kdtool_fit_example_output_is_given_as_about():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "own-model.md").read_text(encoding="utf-8")
    printed = page.index("LLS teacher 83.10% -> runs/mine\n")
    assert "prints about this" in page[printed - 300 : printed]
