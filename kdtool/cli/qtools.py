"""``kdtool export-q``, ``inspect-q`` and ``transfer-q``: make, read and reshape Q artifacts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from kdtool.cli import options as opt
from kdtool.cli.app import app, console, parse_int_list
from kdtool.errors import KdtoolError
from kdtool.fileio import check_output_file, sha256_file

if TYPE_CHECKING:  # torch-backed: imported when a command runs, so --help stays fast
    from kdtool.q.matrix import QMatrix
    from kdtool.reporting.qreport import ConfusionAgreement
    from kdtool.runs.folder import RunDir

RunArgument = Annotated[Path, typer.Argument(help="A run folder made by train-teacher or distill.", metavar="RUN",
                                             show_default=False)]  # fmt: skip
QFile = Annotated[Path, typer.Argument(help="A Q artifact (.safetensors), dense or sparse, or a run folder holding "
                                       "q.safetensors.", metavar="Q", show_default=False)]  # fmt: skip
OutFile = Annotated[Path, typer.Option("--out", help="Q artifact to write.", show_default=False)]
Force = Annotated[bool, typer.Option("--force", help="Replace an existing output file.")]


def _write(q: QMatrix, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    q.save(out)


def _form(q: QMatrix) -> str:
    return f"sparse top-{q.sparse.n}" if q.sparse is not None else "dense"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            break
        size /= 1000
    return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"


def _written(q: QMatrix, out: Path) -> None:
    console.print(f"wrote {out}: {_form(q)} Q of {q.num_classes} classes, α={q.alpha:g}, source {q.source}")


@app.command("export-q")
def export_q(
    ctx: typer.Context,
    run: RunArgument,
    out: OutFile,
    from_teacher: Annotated[
        bool,
        typer.Option(
            "--from-teacher", help="Estimate Q from the run's network (any method) instead of copying a learned Q."
        ),
    ] = False,
    alpha: Annotated[
        float | None,
        typer.Option(help="With --from-teacher: the α stored in the artifact (default: the run's --alpha)."),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(
            help="With --from-teacher: temperature T of the network's log-probabilities, log_softmax(z/T) "
            "(default: 4; T = 1 leaves a trained network's Q nearly 1-hot).",
            show_default=False,
        ),
    ] = None,
    device: opt.Device = "auto",
    force: Force = False,
) -> None:
    """Write a run's Q as a standalone artifact, with the run's provenance in its metadata.

    Without --from-teacher the run must be an LLS run, and its learned Q is copied. With --from-teacher
    any run works: row y of Q is the mean of log_softmax(z/T) the trained network gives the run's
    training images of class y (no augmentation), at temperature T (--temperature).

    **Examples**

    ```
    kdtool export-q runs/fmnist-lls --out artifacts/fmnist.q.safetensors
    kdtool export-q runs/fmnist-onehot --from-teacher --out artifacts/fmnist-from-teacher.q.safetensors
    kdtool export-q runs/c100-ls --from-teacher --alpha 0.2 --out qs/c100.q.safetensors --force
    kdtool export-q runs/fmnist-onehot --from-teacher --temperature 2 --out artifacts/fmnist-t2.q.safetensors
    ```
    """
    from kdtool.runs.folder import RunDir
    from kdtool.workflows.qsources import TEACHER_Q_TEMPERATURE, learned_q, teacher_q

    if alpha is not None and not from_teacher:
        raise KdtoolError("--alpha applies only with --from-teacher (a learned Q keeps the α it was trained with)")
    opt.refuse_unused(ctx, {name: (from_teacher, "with --from-teacher") for name in ("device", "temperature")})
    check_output_file(out, force)
    run_dir = RunDir.open(run)
    if from_teacher:
        q = teacher_q(run_dir, alpha, device, TEACHER_Q_TEMPERATURE if temperature is None else temperature)
    else:
        q = learned_q(run_dir)
    _write(q, out)
    _written(q, out)


@app.command("inspect-q")
def inspect_q(
    ctx: typer.Context,
    file: QFile,
    top: Annotated[int, typer.Option(help="How many similar classes to list per class.")] = 3,
    max_classes: Annotated[int, typer.Option(help="List at most this many classes in the table.")] = 100,
    heatmap: Annotated[
        Path | None,
        typer.Option(
            help="Also draw softmax(Q) as a heatmap here: PNG, PDF or SVG by the extension.", show_default=False
        ),
    ] = None,
    vs_confusion: Annotated[
        Path | None,
        typer.Option(
            help="Compare Q with the confusion matrix of this run's model on its test set.", show_default=False
        ),
    ] = None,
    device: opt.Device = "auto",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --heatmap file.")] = False,
) -> None:
    """Summarise a Q artifact: facts, each class's most similar classes, row entropies.

    --heatmap draws softmax(Q) with the diagonal masked; --vs-confusion evaluates a run's model on its
    test set and prints the Spearman correlation between Q's off-diagonal probabilities and the
    row-normalised confusion matrix, and whether each class's most similar class is also the class it
    is most often mistaken for.

    **Examples**

    ```
    kdtool inspect-q artifacts/fmnist-lenet5-lls.q.safetensors --top 3
    kdtool inspect-q artifacts/fmnist-lenet5-lls.q.safetensors --heatmap runs/fmnist-q.png \\
        --vs-confusion runs/fmnist-lls
    kdtool inspect-q qs/in21k-top32.q.safetensors --top 5 --max-classes 20
    ```
    """
    from kdtool.q.matrix import QMatrix
    from kdtool.reporting.qreport import check_heatmap_size
    from kdtool.runs.folder import RunDir

    opt.refuse_unused(ctx, {"device": (vs_confusion is not None, "with --vs-confusion"),
                             "force": (heatmap is not None, "with --heatmap")})  # fmt: skip
    if top < 1 or max_classes < 1:
        raise KdtoolError("--top and --max-classes must be at least 1")
    if heatmap is not None:
        from kdtool.reporting.plots import check_figure_path

        check_figure_path(heatmap, force)
    q = QMatrix.load(file)
    if heatmap is not None:
        check_heatmap_size(q)
    run = RunDir.open(vs_confusion) if vs_confusion is not None else None
    agreement = _agreement(q, run, device) if run is not None else None
    _print_summary(q, file)
    _print_rows(q, top, max_classes)
    if agreement is not None:
        _print_agreement(q, agreement, run.path)
    if heatmap is not None:
        from kdtool.reporting.qreport import plot_q_heatmap

        heatmap.parent.mkdir(parents=True, exist_ok=True)
        plot_q_heatmap(q, heatmap, title=f"softmax(Q) · {file.name}")
        console.print(f"heatmap written to {heatmap}")


def _agreement(q: QMatrix, run: RunDir, device: str) -> ConfusionAgreement:
    from kdtool.reporting.qreport import confusion_agreement, confusion_on_classes
    from kdtool.training.rundata import predict_run

    logits, labels, names = predict_run(run, "test", device, "--vs-confusion")
    return confusion_agreement(q, confusion_on_classes(logits, labels, names, q.class_names))


def _print_summary(q: QMatrix, path: Path) -> None:
    k = q.num_classes
    console.print(f"[bold]{path}[/bold]  {_form(q)} Q, K={k}, α={q.alpha:g}, dataset {q.dataset}, "
                  f"source {q.source}")  # fmt: skip
    console.print(f"stores {q.stored_values:,} values (dense would be {k * k:,}), file {_bytes(path.stat().st_size)}")
    if q.extra:
        console.print("provenance: " + ", ".join(f"{key}={value}" for key, value in sorted(q.extra.items())))


def _print_rows(q: QMatrix, top: int, max_classes: int) -> None:
    stats = q.row_stats(top)
    shown = min(q.num_classes, max_classes)
    table = Table(title=f"most similar classes per row of softmax(Q) (uniform entropy: log K = "
                        f"{math.log(q.num_classes):.3f} nats)", title_justify="left")  # fmt: skip
    table.add_column("#", justify="right")
    table.add_column("class")
    for rank in range(stats.similar.shape[1]):
        table.add_column(f"top-{rank + 1}")
    table.add_column("p(self)", justify="right")
    table.add_column("entropy", justify="right")
    for y in range(shown):
        pairs = zip(stats.similar[y].tolist(), stats.similar_probs[y].tolist(), strict=True)
        similar = [f"{q.class_names[j]} {p:.3f}" for j, p in pairs]
        table.add_row(str(y), q.class_names[y], *similar, f"{stats.diagonal[y]:.3f}", f"{stats.entropy[y]:.3f}")
    console.print(table)
    if shown < q.num_classes:
        console.print(f"... {q.num_classes - shown} more classes (--max-classes)")
    if stats.similar.shape[1] < top:
        console.print(f"(listing {stats.similar.shape[1]} per class: that is all this Q singles out)")
    entropy = stats.entropy
    console.print(f"row entropy: mean {entropy.mean():.3f}, min {entropy.min():.3f} "
                  f"({q.class_names[int(entropy.argmin())]}), max {entropy.max():.3f} "
                  f"({q.class_names[int(entropy.argmax())]}) nats")  # fmt: skip


def _print_agreement(q: QMatrix, agreement: ConfusionAgreement, run_path: Path) -> None:
    names = q.class_names
    table = Table(title=f"Q vs the confusion matrix of {run_path} on its test set", title_justify="left")
    for header in ("class", "Q's most similar", "most often mistaken for", "agree", "row ρ"):
        table.add_column(header)
    for y in range(q.num_classes):
        mistaken = agreement.confusion_top[y]
        agree = agreement.agrees[y]
        table.add_row(
            names[y],
            names[agreement.q_top[y]],
            ", ".join(names[j] for j in mistaken) + f" ({agreement.confusion_rates[y, mistaken[0]]:.1%})"
            if mistaken
            else "—",
            "—" if agree is None else ("yes" if agree else "no"),
            "—" if math.isnan(agreement.row_spearman[y]) else f"{agreement.row_spearman[y]:+.2f}",
        )
    console.print(table)
    agreed, compared = agreement.top1_agreement
    console.print(f"Spearman ρ = {agreement.spearman:+.3f} (p = {agreement.pvalue:.2g}) over {agreement.cells} "
                  f"off-diagonal cells; top-1 agreement {agreed}/{compared} classes")  # fmt: skip


@app.command("transfer-q")
def transfer_q(
    file: QFile,
    out: OutFile,
    classes: Annotated[
        str | None, typer.Option(help='Kept classes by name, in order: "a,b,c".', show_default=False)
    ] = None,
    class_indices: Annotated[
        str | None, typer.Option(help="Kept classes by index, in order: 0,2,4.", show_default=False)
    ] = None,
    top_n: Annotated[
        int | None,
        typer.Option(help="Write the sparse form keeping the N most similar classes per row.", show_default=False),
    ] = None,
    force: Force = False,
) -> None:
    """Reshape a Q artifact: keep a subset of its classes, and/or make it sparse (top-N per row).

    A class subset slices the *logits* (rows and columns, in the given order), so softmax then spreads
    each row over the kept classes only. The sparse form keeps, per row, the N largest off-diagonal
    logits, the diagonal and one shared logit for the rest, so every kept probability is unchanged.

    **Examples**

    ```
    kdtool transfer-q artifacts/fmnist-lenet5-lls.q.safetensors --classes "T-shirt/top,Pullover,Coat,Shirt" \\
        --out artifacts/fmnist-tops.q.safetensors
    kdtool transfer-q qs/c100.q.safetensors --class-indices 0,2,4 --out qs/c100-3.q.safetensors
    kdtool transfer-q qs/in21k.q.safetensors --top-n 32 --out qs/in21k-top32.q.safetensors
    ```
    """
    from kdtool.q.matrix import QMatrix
    from kdtool.q.subsets import parse_name_list, resolve_classes
    from kdtool.runs.folder import q_artifact_path

    if classes is None and class_indices is None and top_n is None:
        raise KdtoolError("nothing to do: give --classes, --class-indices or --top-n")
    check_output_file(out, force)
    q = QMatrix.load(file)
    if classes is not None or class_indices is not None:
        names = parse_name_list(classes) if classes is not None else None
        indices = parse_int_list(class_indices, "--class-indices") if class_indices is not None else None
        q = q.subset(resolve_classes(q.class_names, names=names, indices=indices))
    if top_n is not None:
        q = q.to_sparse(top_n)
    parent = q_artifact_path(file)  # a run folder given for its q.safetensors
    q = q.with_extra({"parent": str(parent), "parent_sha256": sha256_file(parent)})
    _write(q, out)
    _written(q, out)
