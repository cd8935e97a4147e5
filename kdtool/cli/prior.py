"""``kdtool make-prior superclass`` and ``make-prior semantic``: fixed smoothing priors as Q artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kdtool.cli.app import app, console
from kdtool.errors import KdtoolError
from kdtool.fileio import check_output_file

if TYPE_CHECKING:  # torch-backed: imported when a command runs, so --help stays fast
    from kdtool.q.matrix import QMatrix

prior_app = typer.Typer(
    help="Build a fixed smoothing prior θ (Preferential Label Smoothing) as a Q artifact.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(prior_app, name="make-prior")

Dataset = Annotated[str, typer.Option(help="Dataset whose classes (and their order) the prior follows: "
                                      "fashion-mnist, mnist, cifar10, cifar100, svhn, imagefolder:PATH "
                                      "(class folders of PATH/train), goemotions, goemotions-ekman or "
                                      "text:PATH. No data is loaded.",
                                      show_default=False)]  # fmt: skip
Out = Annotated[Path, typer.Option(help="Q artifact to write (e.g. artifacts/name.q.safetensors).",
                                   show_default=False)]  # fmt: skip
Alpha = Annotated[float, typer.Option(help="α stored in the artifact: the mixing weight distill --substitute-q "
                                      "uses unless given one.")]  # fmt: skip
Force = Annotated[bool, typer.Option("--force", help="Replace an existing output file.")]
Groups = Annotated[Path | None, typer.Option(help='JSON file {"group": ["class name", ...]} covering every class '
                                             "once (default: CIFAR-100's 20 superclasses).",
                                             show_default=False)]  # fmt: skip
WordVectors = Annotated[
    Path | None,
    typer.Option("--word-vectors", "--label-vectors", help="GloVe or word2vec text file of word vectors, as "
                 "train-teacher --word-vectors takes (default: the GloVe 6B 50-d vectors of the built-in datasets' "
                 "class words, shipped with kdtool). --label-vectors is its older name, still accepted.",
                 show_default=False),
]  # fmt: skip


def _save(q: QMatrix, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    q.save(out)
    console.print(f"wrote {out}: {q.extra['prior']} prior over the {q.num_classes} classes of {q.dataset}, "
                  f"source prior, α={q.alpha:g} (kdtool inspect-q {out} shows it)")  # fmt: skip


@prior_app.command("superclass")
def superclass(
    dataset: Dataset,
    out: Out,
    groups: Groups = None,
    alpha: Alpha = 0.1,
    force: Force = False,
) -> None:
    """Cluster label smoothing (PLS's CLS): θ_y uniform over the other classes of y's group.

    A class alone in its group falls back to uniform over all other classes. Every class of the
    dataset must be in exactly one group; a name that is not a class is an error.

    **Examples**

    ```
    kdtool make-prior superclass --dataset cifar100 --out artifacts/c100-superclass.q.safetensors
    kdtool make-prior superclass --dataset fashion-mnist --groups recipes/fmnist-groups.json \\
        --out priors/fmnist-superclass.q.safetensors
    kdtool make-prior superclass --dataset imagefolder:./data --groups my-groups.json \\
        --out artifacts/groups.q.safetensors
    ```
    """
    from kdtool.data.classnames import CIFAR100_SUPERCLASSES, dataset_class_names
    from kdtool.q.priors import load_groups, prior_q, superclass_prior

    check_output_file(out, force)
    names = dataset_class_names(dataset)
    if groups is None and dataset != "cifar100":
        raise KdtoolError(f"built-in groups exist for cifar100 only: pass --groups FILE for {dataset}")
    table = CIFAR100_SUPERCLASSES if groups is None else load_groups(groups)
    theta, alone = superclass_prior(names, table)
    source = "cifar100-superclasses" if groups is None else groups.name
    _save(prior_q(theta, names, alpha, dataset, "superclass", {"groups": source}), out)
    if alone:
        console.print(f"alone in their group, smoothed uniformly over all other classes: {', '.join(alone)}")


@prior_app.command("semantic")
def semantic(
    dataset: Dataset,
    out: Out,
    word_vectors: WordVectors = None,
    alpha: Alpha = 0.1,
    force: Force = False,
) -> None:
    """Semantic label smoothing (PLS's SEMLS): θ_yk ∝ 1/‖v_y − v_k‖ over k ≠ y.

    v is a class name's word vector; a name of several words (split on _, space and /) gets the
    mean of its words' vectors. Words without a vector are left out and listed; a class with no
    vector at all is an error.

    **Examples**

    ```
    kdtool make-prior semantic --dataset cifar10 --out artifacts/c10-semantic.q.safetensors
    kdtool make-prior semantic --dataset cifar100 --word-vectors glove.6B.300d.txt \\
        --out artifacts/c100-semantic.q.safetensors
    ```
    """
    from kdtool.data.classnames import dataset_class_names
    from kdtool.data.wordvectors import DEFAULT_LABEL_VECTORS, class_vectors
    from kdtool.q.priors import prior_q, semantic_prior

    check_output_file(out, force)
    word_vectors = DEFAULT_LABEL_VECTORS if word_vectors is None else word_vectors
    names = dataset_class_names(dataset)
    vectors, skipped = class_vectors(names, word_vectors)
    theta = semantic_prior(vectors, names)
    extra = {"label_vectors": word_vectors.name, "vector_dim": str(vectors.shape[1])}
    _save(prior_q(theta, names, alpha, dataset, "semantic", extra), out)
    if skipped:
        left_out = ", ".join(f"{w!r} of {name!r}" for name, words in skipped.items() for w in words)
        console.print(f"words without a vector, left out of their class's mean: {left_out}")
