"""``kdtool compare``, ``kdtool report`` and ``kdtool evaluate``: mean ± std over seeds, curves, an HTML page
of a run or of a comparison, and a run's test report."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from kdtool.cli import options as opt
from kdtool.cli.app import app, console, parse_int_list
from kdtool.errors import KdtoolError, unknown_choice
from kdtool.reporting.display import Column, FittedTable

FORMATS = ("table", "markdown", "csv")
# Notes go to stderr so that a markdown or CSV table on stdout can be redirected as it is.
notes = Console(stderr=True, soft_wrap=True)

Runs = Annotated[list[Path], typer.Argument(help="Run folders, or folders with run folders below them (such as "
                                            "the OUT of a --seeds run).", metavar="RUNS",
                                            show_default=False)]  # fmt: skip
GroupBy = Annotated[str | None, typer.Option(help="Comma list of config.json keys whose values define a group, e.g. "
                                             "smoothing,alpha or lls_terms (nested keys: dataset_info.name). "
                                             "Default: smoothing and every option that changes results in which "
                                             "the runs differ (seeds aside).", show_default=False)]  # fmt: skip
Metric = Annotated[str, typer.Option(help="Comma list of metrics.csv columns to report; the first is plotted. "
                                     "Accuracy-like ones (*acc, *f1) also get their best epoch. By default, runs "
                                     "on imbalanced training data add balanced, many/medium/few-shot accuracy and "
                                     "macro-F1.")]  # fmt: skip
Format = Annotated[str, typer.Option("--format", help="table (terminal), markdown or csv (the table's numbers as "
                                     "columns: accuracies in %, rounded as shown).")]  # fmt: skip
Plot = Annotated[Path | None, typer.Option(help="Write a figure (PNG, PDF or SVG by the extension): the first "
                                           "metric per epoch (mean line, min-max band per group) and a reliability "
                                           "diagram of each group's best run.", show_default=False)]  # fmt: skip
Force = Annotated[bool, typer.Option("--force", help="Replace an existing figure.")]
ReportForce = Annotated[bool, typer.Option("--force", help="Replace an existing report page (one kdtool wrote).")]
PlotDynamics = Annotated[Path | None, typer.Option(help="Write a figure (PNG, PDF or SVG) of the training dynamics "
                                                   "(PLS study): per learning rate, gradient norm and generalization "
                                                   "error per epoch, a line per method (mean over seeds) and a band.",
                                                   show_default=False)]  # fmt: skip


@app.command("compare")
def compare(
    ctx: typer.Context,
    runs: Runs,
    group_by: GroupBy = None,
    metric: Metric = "test_acc,test_nll,test_ece",
    output_format: Format = "table",
    plot: Plot = None,
    plot_dynamics: PlotDynamics = None,
    device: opt.Device = "auto",
    force: Force = False,
) -> None:
    """Compare runs: mean ± std over the runs of each group (e.g. over seeds) of the test accuracy, NLL and
    ECE at the selected and at the last epoch, the best test accuracy, and the seconds per epoch.

    Runs are grouped by method (the config key smoothing) and by every option that changes results in which
    they differ (such a group is named by them, e.g. kd · logit_standardize=True), unless --group-by names
    the keys. Columns say which epoch they report: "selected" is the epoch whose weights a run kept
    (metrics.csv's selected column: the last, unless the run selected one with --select), "last" the last
    epoch it trained, "best" its best epoch; "selected = last" when every run kept its last epoch. Accuracies
    are in percent in every format (CSV columns ..._pct_mean/_pct_std), each value rounded as the table shows
    it. Runs still training or interrupted are left out with a note; another note says when a group's runs
    differ in more than the seed.

    **Examples**

    ```
    kdtool compare runs/fmnist-onehot runs/fmnist-ls runs/fmnist-lls          # folders of seed0, seed1, ...
    kdtool compare runs/fmnist-* --group-by smoothing --metric test_acc --format markdown
    kdtool compare runs/alpha --group-by alpha --format csv > alpha.csv
    kdtool compare runs/ablation --group-by lls_terms --metric test_acc,test_macro_f1
    kdtool compare runs/fmnist-* --plot artifacts/fmnist-curves.png
    kdtool compare runs/pls-dynamics --plot-dynamics artifacts/pls-dynamics.png      # a kdtool sweep's runs
    ```
    """
    from kdtool.reporting import compare as cmp

    if output_format not in FORMATS:
        raise unknown_choice("--format", output_format, FORMATS)
    from kdtool.reporting.plots import check_figure_path

    drawn = plot is not None or plot_dynamics is not None
    opt.refuse_unused(ctx, {"device": (plot is not None, "with --plot (its reliability diagram)"),
                            "force": (drawn, "with --plot or --plot-dynamics")})  # fmt: skip
    for picture in (plot, plot_dynamics):
        if picture is not None:
            check_figure_path(picture, force)
    if plot is not None:  # the reliability diagram runs each group's best model
        from kdtool.distributed import check_device

        check_device(device)
    found = cmp.load_runs(cmp.find_runs(runs))
    for line in found.left_out():
        notes.print(line)
    group_keys, metrics = _groups_and_metrics(ctx, found, group_by, metric)
    _print_summary(found, group_keys, metrics, output_format)
    if plot is not None:
        _plot(found, group_keys, metrics[0], plot, device)
    if plot_dynamics is not None:
        _plot_dynamics(found, plot_dynamics)


def _groups_and_metrics(ctx: typer.Context, found, group_by: str | None, metric: str) -> tuple[list[str], list[str]]:
    """``--group-by`` and ``--metric`` checked against the runs ``found``; without ``--metric``, the long-tail
    columns too where every run has them (imbalanced training data)."""
    from kdtool.reporting import compare as cmp

    group_keys = cmp.check_group_keys(found, None if group_by is None else group_by.split(","))
    metrics = cmp.check_metrics(found, metric.split(","))
    if "metric" not in opt.given_options(ctx):
        metrics = cmp.with_long_tail_metrics(found, metrics)
    return group_keys, metrics


def _print_summary(found, group_keys: list[str], metrics: list[str], output_format: str) -> None:
    """The groups' mean ± std table in ``output_format`` on stdout, then a note for each group whose runs differ
    in more than the seed."""
    from kdtool.reporting import compare as cmp

    table = cmp.group_summary(found, group_keys, metrics)
    headers, rows = cmp.display_table(table, group_keys)
    if output_format == "csv":
        print(cmp.csv_table(table).to_csv(index=False), end="")
    elif output_format == "markdown":
        print(cmp.to_markdown(headers, rows, len(group_keys)), end="")
    else:
        shown = FittedTable(cmp.display_columns(table, group_keys), caption=cmp.EPOCH_LEGEND,
                            title=f"{len(found.configs)} runs, mean ± std per group")  # fmt: skip
        for row in rows:
            shown.add_row(*row)
        console.print(shown)
    for group, keys in cmp.mixed_options(found, group_keys).items():
        notes.print(f"note: the runs of group {group} also differ in {', '.join(keys[:5])}"
                    f"{' ...' if len(keys) > 5 else ''}; add keys to --group-by to separate them")  # fmt: skip


def _plot_dynamics(found, path: Path) -> None:
    """Per learning rate, the gradient norm and generalization error per epoch of each method (a sweep's runs)."""
    from kdtool.reporting import compare as cmp
    from kdtool.reporting.plots import plot_dynamics

    path.parent.mkdir(parents=True, exist_ok=True)
    plot_dynamics(cmp.dynamics_curves(found), path)
    console.print(f"dynamics plot written to {path}", soft_wrap=True)


def _plot(found, group_keys: list[str], metric: str, path: Path, device: str) -> None:
    """Curves of every group and the calibration of each group's best run, evaluated on its test set."""
    from kdtool.reporting import compare as cmp
    from kdtool.reporting.plots import plot_comparison

    groups = cmp.calibrated_groups(found, group_keys, metric, device, notes.print)
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_comparison(groups, metric, path)
    console.print(f"plot written to {path}", soft_wrap=True)


ReportOut = Annotated[Path, typer.Option(help="HTML file to write: one self-contained page (figures inline, nothing "
                                        "fetched), to open in a browser or send as an attachment.")]  # fmt: skip


@app.command("report")
def report(
    ctx: typer.Context,
    runs: Runs,
    out: ReportOut = Path("report.html"),
    group_by: GroupBy = None,
    metric: Metric = "test_acc,test_nll,test_ece",
    device: opt.Device = "auto",
    force: ReportForce = False,
) -> None:
    """Write one self-contained HTML page about a run, or about several runs compared.

    For one run: its command and resolved options, its result at the selected and at the last epoch, its
    teacher or Q source, the curves (accuracy, loss, NLL, ECE, learning rate, gradient norm), the per-epoch
    table, the reliability diagram and the confusion matrix on its test set, and for a run with a Q the Q
    heatmap and each class's most similar classes. For several runs: grouped as compare groups them
    (--group-by), mean ± std at the selected and at the last epoch, the overlaid curves, and the reliability
    diagram of each group's best run. The test-set figures run the networks (--device).

    **Examples**

    ```
    kdtool report runs/lls --out runs/lls/report.html
    kdtool report runs/fmnist-lls-vs-ls/*/seed* --out report.html
    kdtool report runs/alpha --group-by alpha --metric test_acc,test_macro_f1 --out alpha.html
    ```
    """
    from kdtool.distributed import check_device
    from kdtool.fileio import atomic_write_text, check_output_file
    from kdtool.reporting import compare as cmp
    from kdtool.reporting import htmlreport

    if out.suffix.lower() not in (".html", ".htm"):
        raise KdtoolError(f"report writes an HTML page: --out must end in .html (got {out.name!r})")
    check_output_file(out, force)
    check_device(device)
    paths = cmp.find_runs(runs)
    if len(paths) == 1:
        opt.refuse_unused(ctx, {"group_by": (False, "with several runs"), "metric": (False, "with several runs")})
        page = htmlreport.run_page(paths[0], device)
    else:
        found = cmp.load_runs(paths)
        for line in found.left_out():
            notes.print(line)
        group_keys, metrics = _groups_and_metrics(ctx, found, group_by, metric)
        page = htmlreport.group_page(found, group_keys, metrics, device, notes.print)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, page)
    console.print(f"report written to {out}", soft_wrap=True)


RunArg = Annotated[Path, typer.Argument(help="A run folder made by train-teacher or distill.", metavar="RUN",
                                        show_default=False)]  # fmt: skip
EvalDataset = Annotated[str | None, typer.Option(help="Evaluate on this dataset (same spellings as train-teacher) "
                                                 "instead of the run's own data; it must hold the run's classes.",
                                                 show_default=False)]  # fmt: skip
EvalLimit = Annotated[int | None, typer.Option("--limit-test", help="With --dataset: at most N samples of the split "
                                               "(seeded).", show_default=False)]  # fmt: skip
Split = Annotated[str, typer.Option(help="test or train (unaugmented).")]
Classes = Annotated[str | None, typer.Option(help="Only these classes' samples, predicted among these classes alone: "
                                             '"a,b,c".', show_default=False)]  # fmt: skip
Confusion = Annotated[Path | None, typer.Option("--out", "--confusion", help="Confusion-matrix figure to write, PNG, "
                                                "PDF or SVG by the extension (default: confusion-SPLIT.png in the "
                                                "run folder, with the --dataset and the number of --classes in the "
                                                "name when given).",
                                                show_default=False)]  # fmt: skip
ClassIndices = Annotated[str | None, typer.Option(help="The same by index, in this order: 0,2,4.",
                                                  show_default=False)]  # fmt: skip
MaxClasses = Annotated[int, typer.Option(help="List at most this many classes in the per-class table.")]


def _default_confusion(run: Path, dataset: str | None, split: str, classes: list | None) -> Path:
    """``RUN/confusion-[DATASET-]SPLIT[-Nclasses].png``: distinct evaluations get distinct files."""
    parts = ["confusion"]
    if dataset is not None:
        parts.append(re.sub(r"[^A-Za-z0-9.+-]+", "-", dataset.split(":")[-1].rstrip("/").split("/")[-1]))
    parts.append(split)
    if classes is not None:
        parts.append(f"{len(classes)}classes")
    return run / ("-".join(parts) + ".png")


@app.command("evaluate")
def evaluate(
    run: RunArg,
    dataset: EvalDataset = None,
    data_root: opt.DataRoot = None,
    download: opt.Download = False,
    limit_test: EvalLimit = None,
    split: Split = "test",
    classes: Classes = None,
    class_indices: ClassIndices = None,
    confusion: Confusion = None,
    max_classes: MaxClasses = 100,
    device: opt.Device = "auto",
    force: Force = False,
) -> None:
    """Evaluate a run's network: accuracy, macro-F1, NLL, ECE, per-class accuracy and F1, and a confusion
    matrix PNG with class names.

    Without --dataset the run's own test split is used exactly as in training (class subset, limits and
    seed included). With --dataset, that dataset's split (e.g. the full test set of a run trained with
    --limit-test); a student of a class subset is evaluated on its classes of the full dataset.

    **Examples**

    ```
    kdtool evaluate runs/fmnist-lls/seed0
    kdtool evaluate runs/fmnist-lls/seed0 --dataset fashion-mnist --out artifacts/fmnist-confusion.png
    kdtool evaluate runs/st-tops --dataset fashion-mnist
    kdtool evaluate runs/fmnist-lls/seed0 --classes "T-shirt/top,Pullover,Coat,Shirt"
    kdtool evaluate runs/fmnist-lls/seed0 --class-indices 0,2,4,6
    kdtool evaluate runs/c100-lls --dataset cifar100 --data-root ~/data --split train
    ```
    """
    from kdtool.distributed import check_device
    from kdtool.q.subsets import parse_name_list
    from kdtool.reporting.plots import check_figure_path, plot_confusion
    from kdtool.reporting.qreport import HEATMAP_MAX_CLASSES
    from kdtool.runs.folder import RunDir
    from kdtool.workflows.evaluate import evaluate as run_evaluate

    if max_classes < 1:
        raise KdtoolError("--max-classes must be at least 1")
    kept = parse_name_list(classes) if classes is not None else None
    indices = parse_int_list(class_indices, "--class-indices") if class_indices is not None else None
    if kept is not None and indices is not None:
        raise KdtoolError("give the kept classes by name (--classes) or by index (--class-indices), not both")
    run_dir = RunDir.open(run)
    subset = kept if kept is not None else indices
    png = confusion if confusion is not None else _default_confusion(run, dataset, split, subset)
    check_figure_path(png, force)
    check_device(device)
    result = run_evaluate(run_dir, dataset, str(data_root) if data_root else None, download, limit_test, split,
                          kept, device, indices)  # fmt: skip
    _print_evaluation(result, run, dataset, split, max_classes)
    k = len(result.class_names)
    if k > HEATMAP_MAX_CLASSES:
        notes.print(f"no confusion-matrix PNG: {k} classes are unreadable in one picture (limit "
                    f"{HEATMAP_MAX_CLASSES}); pick some with --classes")  # fmt: skip
        return
    png.parent.mkdir(parents=True, exist_ok=True)
    plot_confusion(result.confusion, result.class_names, png, f"{run} · {dataset or 'own data'} · {split} split")
    where = " (in the run folder; --out FILE writes it elsewhere)" if confusion is None else ""
    console.print(f"confusion matrix written to {png}{where}", soft_wrap=True)


def _print_evaluation(result, run: Path, dataset: str | None, split: str, max_classes: int) -> None:
    m = result.metrics
    total = int(result.support.sum())
    console.print(f"[bold]{run}[/bold] on {dataset or 'its own data'}, {split} split: {total} samples, "
                  f"{len(result.class_names)} classes", soft_wrap=True)  # fmt: skip
    console.print(f"accuracy {m['acc']:.2%}  macro-F1 {m['macro_f1']:.4f}  NLL {m['nll']:.4f}  ECE {m['ece']:.4f}")
    if result.shot_rule is not None:
        console.print(f"balanced accuracy {m['balanced_acc']:.2%}  many-shot {m['many_acc']:.2%}  medium-shot "
                      f"{m['medium_acc']:.2%}  few-shot {m['few_acc']:.2%}; groups: {result.shot_rule}",
                      soft_wrap=True)  # fmt: skip
    counts = result.train_counts
    columns = [Column("class", "left"), Column("samples", drop=1), Column("accuracy"), Column("F1"),
               Column("most often mistaken for", "left", drop=2)]  # fmt: skip
    if counts is not None:  # the rare classes last, where a long tail shows
        columns[1:1] = [Column("train samples", drop=3)]
    title = "per class" + ("" if counts is None else ", by training samples (accuracy: recall)")
    table = FittedTable(columns, title=title)
    mistakes = result.confusion.clone()
    mistakes.fill_diagonal_(-1)
    order = range(len(result.class_names))
    if counts is not None:
        order = sorted(order, key=lambda y: -counts[y])
    shown = min(len(result.class_names), max_classes)
    for y in list(order)[:shown]:
        n = int(result.support[y])
        worst = int(mistakes[y].argmax())
        mistaken = f"{result.class_names[worst]} ({int(mistakes[y, worst]) / n:.1%})" if mistakes[y, worst] > 0 else "—"
        accuracy, f1 = float(result.accuracy[y]), float(result.f1[y])
        cells = [result.class_names[y], str(n), "—" if math.isnan(accuracy) else f"{accuracy:.2%}",
                 "—" if math.isnan(f1) else f"{f1:.4f}", mistaken]  # fmt: skip
        if counts is not None:
            cells[1:1] = [f"{counts[y]:,}"]
        table.add_row(*cells)
    console.print(table)
    if shown < len(result.class_names):
        console.print(f"... {len(result.class_names) - shown} more classes (--max-classes)")
