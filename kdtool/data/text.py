"""Text datasets: tab-separated files and the embedded GoEmotions, tokenized into padded id tensors.

A text split becomes an int64 tensor N×``max_len`` of token ids, right-padded with id 0 (``<pad>``),
so a sequence's length is its count of non-zero ids and every :class:`~kdtool.data.Split` operation
(subsets, class subsets, the batch loader) works on text unchanged. Every encoded text holds at least
one token (an empty text becomes ``<unk>``), so no length is ever 0.

The vocabulary is built from the training split only and saved in the run folder (``vocab.json``),
so a run can be reloaded for evaluation or as a teacher with the exact ids it was trained on.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import torch

from kdtool.data.dataset import Dataset, DatasetInfo, Split
from kdtool.data.embedded import EMBEDDED_ROOT, verify_checksums
from kdtool.errors import KdtoolError
from kdtool.fileio import atomic_write_json

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
VOCAB_FILE = "vocab.json"
VOCAB_FORMAT = "kdtool.vocab/1"

# Embedded single-label GoEmotions subsets: dataset name -> folder under embedded/goemotions.
GOEMOTIONS = {"goemotions": "full", "goemotions-ekman": "ekman"}

# Words (letters/digits, keeping inner apostrophes: "don't") or any single other visible character
# (punctuation, emoji), so "[NAME]!!" -> "[", "name", "]", "!", "!". The special tokens contain "<"
# and ">", which this pattern always splits off, so no text can produce them.
_TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lower-cased word and symbol tokens of ``text``."""
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True)
class Vocabulary:
    """Token strings by id: ``<pad>`` is 0, ``<unk>`` is 1, then words by falling training frequency."""

    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.tokens[:2] != (PAD, UNK):
            raise KdtoolError(f"a vocabulary must start with {PAD!r} and {UNK!r}")
        if len(set(self.tokens)) != len(self.tokens):
            raise KdtoolError("a vocabulary lists a token twice")

    def __len__(self) -> int:
        return len(self.tokens)

    @cached_property
    def index(self) -> dict[str, int]:
        return {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def build(cls, tokenized: Iterable[Sequence[str]], size: int) -> Vocabulary:
        """The ``size − 2`` most frequent tokens (ties broken alphabetically) after ``<pad>`` and ``<unk>``."""
        if size < 3:
            raise KdtoolError(f"--vocab-size must be at least 3 (padding, unknown and one word), got {size}")
        counts = Counter(token for tokens in tokenized for token in tokens)
        ranked = sorted(counts, key=lambda token: (-counts[token], token))
        return cls((PAD, UNK, *ranked[: size - 2]))

    def encode(self, tokenized: Sequence[Sequence[str]], max_len: int) -> torch.Tensor:
        """N×``max_len`` int64 ids, right-padded with 0; texts are cut after ``max_len`` tokens."""
        if max_len < 1:
            raise KdtoolError(f"--max-len must be positive, got {max_len}")
        ids = torch.full((len(tokenized), max_len), PAD_ID, dtype=torch.long)
        for row, tokens in enumerate(tokenized):
            encoded = [self.index.get(token, UNK_ID) for token in tokens[:max_len]] or [UNK_ID]
            ids[row, : len(encoded)] = torch.tensor(encoded)
        return ids

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, {"format": VOCAB_FORMAT, "tokens": list(self.tokens)})

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        try:
            record = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise KdtoolError(f"cannot read vocabulary {path}: {exc}") from exc
        if not isinstance(record, dict) or record.get("format") != VOCAB_FORMAT:
            raise KdtoolError(f"{path} is not a kdtool vocabulary (format {VOCAB_FORMAT!r})")
        tokens = record.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise KdtoolError(f"{path}: 'tokens' must be a list of strings")
        return cls(tuple(tokens))


def sequence_lengths(tokens: torch.Tensor) -> torch.Tensor:
    """Length of each right-padded row of a token-id batch (its count of non-padding ids)."""
    return (tokens != PAD_ID).sum(1)


def trim_to_longest(tokens: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The batch transform of text: cut the padding columns no sequence of the batch reaches.

    Text has no augmentation, so ``generator`` is unused; the signature is the loader's transform's.
    """
    return tokens[:, : max(1, int(sequence_lengths(tokens).max()))]


@dataclass(frozen=True)
class TextSplit:
    """One split as tokenized texts and int64 labels."""

    tokens: list[list[str]]
    labels: torch.Tensor


@dataclass(frozen=True)
class TextCorpus:
    """A labelled text dataset before encoding: tokenized splits and the class names."""

    name: str
    class_names: tuple[str, ...]
    train: TextSplit
    test: TextSplit
    validation: TextSplit | None = None


def _lines(path: Path) -> Iterable[tuple[int, str]]:
    """(line number, text without line ending) for each line of a UTF-8 file, plain or gzip'd."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise KdtoolError(f"{path}:{number}: not valid UTF-8 ({exc.reason})") from None
                yield number, (line.removeprefix("\ufeff") if number == 1 else line).rstrip("\r\n")
    except OSError as exc:
        raise KdtoolError(f"cannot read {path}: {exc}") from exc


def read_tsv(path: Path) -> list[tuple[int, str, str]]:
    """(line number, label, text) of every non-blank ``label<TAB>text`` line of ``path``."""
    rows = []
    for number, line in _lines(path):
        if not line.strip():
            continue
        label, tab, text = line.partition("\t")
        if not tab:
            raise KdtoolError(f"{path}:{number}: expected 'label<TAB>text', found no tab")
        if not label.strip():
            raise KdtoolError(f"{path}:{number}: the label before the tab is empty")
        rows.append((number, label.strip(), text))
    if not rows:
        raise KdtoolError(f"{path} holds no examples")
    return rows


def read_labels(path: Path) -> tuple[str, ...]:
    """Class names from ``labels.txt``: one a line, in label order, blank lines ignored."""
    names: dict[str, int] = {}
    for number, line in _lines(path):
        name = line.strip()
        if not name:
            continue
        if name in names:
            raise KdtoolError(f"{path}:{number}: class {name!r} is already listed on line {names[name]}")
        names[name] = number
    return tuple(names)


def _class_names(folder: Path, train_rows: list[tuple[int, str, str]]) -> tuple[tuple[str, ...], str]:
    """The class names of a text folder and where they come from: ``labels.txt``, else the sorted training labels."""
    labels_file = folder / "labels.txt"
    if labels_file.is_file():
        return read_labels(labels_file), str(labels_file)
    return tuple(sorted({label for _, label, _ in train_rows})), "the training labels"


def text_class_names(spec: str) -> tuple[str, ...]:
    """The class names of a text ``--dataset`` without tokenizing it (for priors built from class names)."""
    folder = EMBEDDED_ROOT / "goemotions" / GOEMOTIONS[spec] if spec in GOEMOTIONS else Path(spec.removeprefix("text:"))
    if (folder / "labels.txt").is_file():
        return read_labels(folder / "labels.txt")
    train = _split_file(folder, "train")
    if train is None:
        raise KdtoolError(f"text dataset {folder} has neither labels.txt nor train.tsv to read class names from")
    return _class_names(folder, read_tsv(train))[0]


def _split_file(folder: Path, split: str) -> Path | None:
    for name in (f"{split}.tsv", f"{split}.tsv.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_text_folder(folder: str | os.PathLike, name: str) -> TextCorpus:
    """Read ``train.tsv`` and ``test.tsv`` (and ``validation.tsv`` if present; each may be gzip'd).

    Class names come from ``labels.txt`` when the folder has one, else from the sorted training labels;
    a label outside them is an error naming its file and line.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise KdtoolError(f"text dataset folder {folder} does not exist")
    files = {split: _split_file(folder, split) for split in ("train", "validation", "test")}
    if files["train"] is None or files["test"] is None:
        raise KdtoolError(f"text dataset {folder} needs train.tsv and test.tsv (one 'label<TAB>text' a line)")
    rows = {split: read_tsv(path) for split, path in files.items() if path is not None}
    class_names, where = _class_names(folder, rows["train"])
    if len(class_names) < 2:
        raise KdtoolError(f"text dataset {folder} has {len(class_names)} class(es); it needs at least 2")
    index = {c: i for i, c in enumerate(class_names)}

    def split(key: str) -> TextSplit:
        labels = []
        for number, label, _ in rows[key]:
            if label not in index:
                raise KdtoolError(f"{files[key]}:{number}: label {label!r} is not one of the classes of {where}")
            labels.append(index[label])
        return TextSplit([tokenize(text) for _, _, text in rows[key]], torch.tensor(labels, dtype=torch.long))

    validation = split("validation") if "validation" in rows else None
    return TextCorpus(name, class_names, split("train"), split("test"), validation)


@cache
def _read_goemotions(root: Path, name: str) -> TextCorpus:
    # Cached like Fashion-MNIST: checking, reading and tokenizing ~50k comments takes a few seconds.
    verify_checksums(root)
    return read_text_folder(root / GOEMOTIONS[name], name)


def encode_corpus(corpus: TextCorpus, vocab_size: int, max_len: int, vocabulary: Vocabulary | None = None) -> Dataset:
    """Tensors of a corpus; the vocabulary is built from its training split unless one is given.

    The vocabulary travels in ``dataset.extras["vocabulary"]``; the validation split, if any, in
    ``dataset.validation``.
    """
    if vocabulary is None:
        vocabulary = Vocabulary.build(corpus.train.tokens, vocab_size)
    info = DatasetInfo(corpus.name, corpus.class_names, channels=0, image_size=0, mean=(), std=(),
                       kind="text", vocab_size=len(vocabulary), max_len=max_len)  # fmt: skip

    def encode(split: TextSplit) -> Split:
        return Split(vocabulary.encode(split.tokens, max_len), split.labels)

    validation = None if corpus.validation is None else encode(corpus.validation)
    return Dataset(info, encode(corpus.train), encode(corpus.test), {"vocabulary": vocabulary}, validation)


def is_text_dataset(spec: str) -> bool:
    """Whether a ``--dataset`` value names a text dataset."""
    return spec in GOEMOTIONS or spec.startswith("text:")


def has_official_validation(spec: str) -> bool:
    """Whether a text dataset brings its own validation split (the embedded GoEmotions sets do;
    ``text:PATH`` when it holds ``validation.tsv``)."""
    if spec in GOEMOTIONS:
        return True
    return spec.startswith("text:") and _split_file(Path(spec.removeprefix("text:")), "validation") is not None


def load_text_dataset(
    spec: str, vocab_size: int, max_len: int, vocabulary: Vocabulary | None = None, root: Path | None = None
) -> Dataset:
    """``goemotions``, ``goemotions-ekman`` (embedded, SHA-256 checked) or ``text:PATH``, encoded.

    ``root`` replaces the embedded GoEmotions folder (tests use a copy).
    """
    if spec.startswith("text:"):
        path = spec.removeprefix("text:")
        corpus = read_text_folder(path, f"text:{Path(path).resolve()}")
    else:
        corpus = _read_goemotions(root or EMBEDDED_ROOT / "goemotions", spec)
    return encode_corpus(corpus, vocab_size, max_len, vocabulary)


def resolve_text_options(cfg: Any) -> None:
    """Check a run config's text options against its dataset; on text, ``--augment standard`` becomes ``none``.

    The standard augmentation (crop, and flip where it fits) exists for images only, so on text the
    default means none, and the image-only extras (cutout, mixup, cutmix, randaugment) are errors.
    ``cfg.augment`` must already be resolved to its comma-separated form.
    """
    limits = {"--vocab-size": (cfg.vocab_size, 3), "--max-len": (cfg.max_len, 1),
              "--embed-dim": (cfg.embed_dim, 1), "--hidden-size": (cfg.hidden_size, 1)}  # fmt: skip
    for flag, (value, least) in limits.items():
        if value < least:
            raise KdtoolError(f"{flag} must be at least {least}, got {value}")
    if not is_text_dataset(cfg.dataset):
        if cfg.word_vectors is not None:
            raise KdtoolError(f"--word-vectors initialises a text model's embedding; {cfg.dataset} holds images")
        return
    image_only = [name for name in cfg.augment.split(",") if name not in ("none", "standard")]
    if image_only:
        raise KdtoolError(f"--augment {','.join(image_only)} works on images only; text datasets take no augmentation")
    cfg.augment = "none"
    if cfg.word_vectors is not None and not Path(cfg.word_vectors).is_file():
        raise KdtoolError(f"--word-vectors {cfg.word_vectors} is not a file")


def dataset_vocabulary(dataset: Dataset) -> Vocabulary | None:
    """The vocabulary of a text dataset (None for images)."""
    return dataset.extras.get("vocabulary")
