"""Word vectors of class names, read from GloVe or word2vec text files.

kdtool ships the GloVe 6B 50-d vectors of every word in the class names of Fashion-MNIST, MNIST,
CIFAR-10 and CIFAR-100 (:data:`DEFAULT_LABEL_VECTORS`); any other table in the same text format
works too, e.g. the full GloVe files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from kdtool.data.embedded import EMBEDDED_ROOT
from kdtool.errors import KdtoolError

DEFAULT_LABEL_VECTORS = EMBEDDED_ROOT / "class-name-vectors" / "glove.6B.50d.class-words.txt"


def class_name_words(name: str) -> list[str]:
    """The words of a class name, lower-cased: split on ``_``, whitespace and ``/``; tokens without a
    letter or digit (``-`` in ``"0 - zero"``) dropped. ``"T-shirt/top"`` -> ``["t-shirt", "top"]``."""
    return [w for w in re.split(r"[_\s/]+", name.lower()) if re.search(r"\w", w)]


def read_word_vectors(path: str | os.PathLike, words: Iterable[str]) -> dict[str, torch.Tensor]:
    """The vectors of ``words`` (lower-cased) in a GloVe or word2vec text file.

    One pass, keeping only the requested words, so a full 400k-word table needs no more memory
    than the answer. A word2vec ``count dim`` header line is skipped; when a cased table holds a
    word more than once (``Apple``, ``apple``), its first line wins.
    """
    path = Path(path)
    wanted = {w.lower() for w in words}
    found: dict[str, torch.Tensor] = {}
    dim = None
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                parts = line.rstrip().split(" ")
                if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue  # word2vec header
                word = parts[0].lower()
                if word not in wanted or word in found:
                    continue
                try:
                    vector = torch.tensor([float(v) for v in parts[1:]])
                except ValueError:
                    raise KdtoolError(f"{path}:{number}: not a 'word v1 v2 ...' line of numbers") from None
                if dim is None:
                    dim = vector.numel()
                if vector.numel() != dim or dim == 0:
                    raise KdtoolError(f"{path}:{number}: vector of {vector.numel()} numbers, expected {dim}")
                found[word] = vector
    except OSError as exc:
        raise KdtoolError(f"cannot read label vectors {path}: {exc.strerror or exc}") from exc
    return found


def class_vectors(class_names: Sequence[str], path: str | os.PathLike) -> tuple[torch.Tensor, dict[str, list[str]]]:
    """K×D matrix: each class name's vector, the mean of its words' vectors.

    Words without a vector are left out of the mean and returned (class -> words) so the caller can
    say so; a class none of whose words has a vector is a KdtoolError naming it.
    """
    words = {name: class_name_words(name) for name in class_names}
    table = read_word_vectors(path, (w for ws in words.values() for w in ws))
    missing = {name: [w for w in ws if w not in table] for name, ws in words.items()}
    empty = [name for name, ws in words.items() if all(w not in table for w in ws)]
    if empty:
        shown = ", ".join(repr(n) for n in empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise KdtoolError(f"no word vector in {path} for class {shown}: pass --label-vectors with a larger table")
    rows = [torch.stack([table[w] for w in ws if w in table]).mean(0) for ws in words.values()]
    return torch.stack(rows), {name: ws for name, ws in missing.items() if ws}
