"""Atomic file writes and hashing: a run folder never holds a half-written file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from kdtool.errors import KdtoolError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    tmp_path = _create_temp_beside(path)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _create_temp_beside(path: Path) -> Path:
    """Create a new empty file with a unique name in ``path``'s folder and return its path.

    Mode 0o666 goes through the process umask, as for any file ``open(path, "w")`` creates, so the
    renamed file gets the usual permissions (``tempfile.mkstemp`` would make it 0600). O_EXCL: never
    an existing file, nor one another process is creating at the same moment.
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and atomically move the result to ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _check_safetensors(path: Path, what: str) -> None:
    if not path.is_file():
        raise KdtoolError(f"{what} {path} does not exist")
    with open(path, "rb") as fh:
        head = fh.read(9)
    # safetensors: an 8-byte header length, then the JSON header; a length byte may be 0x80 too
    if head[8:9] != b"{" and (head[:1] == b"\x80" or head[:2] == b"PK"):
        raise KdtoolError(f"{path} is a pickle / torch.save file, not safetensors: kdtool never unpickles")


def read_safetensors(path: str | os.PathLike, what: str, tensors: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
    """The tensors and the string metadata of the safetensors file ``path`` (a ``what``, e.g. "Q
    artifact"); ``tensors=False`` reads the header alone (no tensor is loaded). A missing file, a
    pickle / ``torch.save`` file (never unpickled) or an unreadable one is a one-line KdtoolError."""
    from safetensors import SafetensorError, safe_open  # torch-backed: only when a file is read
    from safetensors.torch import load_file

    path = Path(path)
    _check_safetensors(path, what)
    try:
        values = load_file(str(path)) if tensors else {}
        with safe_open(str(path), framework="pt") as fh:
            return values, fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise KdtoolError(f"{path} is not a readable safetensors file ({exc})") from exc


def check_format(meta: Mapping[str, str], required: Iterable[str], fmt: str, what: str) -> None:
    """Refuse a safetensors header that lacks a ``required`` metadata key (not a kdtool ``what``) or holds
    another ``format`` than ``fmt`` (one this kdtool cannot read)."""
    missing = [k for k in required if k not in meta]
    if missing:
        raise KdtoolError(f"metadata lacks {', '.join(missing)}; not a kdtool {what}")
    if meta["format"] != fmt:
        raise KdtoolError(f"unknown format {meta['format']!r} (this kdtool reads {fmt})")


def written_by_kdtool(path: str | os.PathLike) -> bool:
    """Whether the file ``path`` is one kdtool writes: a safetensors file of a ``kdtool.*`` format (a Q
    artifact), a figure drawn by its plotting (matplotlib's PNG, PDF or SVG, which name matplotlib) or a
    page of ``kdtool report`` (its generator tag)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return False
    if path.suffix == ".safetensors":
        size = int.from_bytes(head[:8], "little")
        try:
            header = json.loads(head[8 : 8 + size]) if 0 < size <= len(head) - 8 else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            return False
        metadata = header.get("__metadata__") if isinstance(header, dict) else None
        return isinstance(metadata, dict) and str(metadata.get("format", "")).startswith("kdtool.")
    if path.suffix in (".png", ".pdf", ".svg"):
        return b"matplotlib" in head.lower()
    if path.suffix in (".html", ".htm"):  # a page of `kdtool report` (kdtool.reporting.htmlreport.GENERATOR)
        return b'<meta name="generator" content="kdtool' in head
    return False


def check_output_file(path: str | os.PathLike, force: bool) -> Path:
    """Fail early (before any work) if ``path`` cannot be written as a file. An existing file needs
    ``force``, and is replaced only if kdtool wrote it (:func:`written_by_kdtool`)."""
    path = Path(path)
    if path.is_dir():
        raise KdtoolError(f"{path} is a folder, not a file")
    if path.exists() and not force:
        raise KdtoolError(f"{path} already exists: pass --force to replace it")
    if path.exists() and not written_by_kdtool(path):
        raise KdtoolError(f"{path} is not a file kdtool wrote: --force replaces only kdtool's own outputs; "
                          f"choose another output path")  # fmt: skip
    parent = next((p for p in path.parents if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise KdtoolError(f"cannot write {path}: {parent} is not a writable folder")
    return path
