"""Atomic file writes, the record of what kdtool wrote, and hashing.

A run folder never holds a half-written file. A folder kdtool owns (a run folder, a shard folder) holds
a manifest, ``.kdtool-manifest.json``, of every file written in it or below it (each atomic write adds
its path; tracker folders are recorded after the tracker wrote them), so ``--force`` removes exactly
those files and refuses a folder holding anything else, at any depth. A file written outside such a
folder carries its own marker instead (safetensors metadata, PNG/PDF/SVG metadata, an HTML generator tag).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import tempfile
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
        record_written(path)
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


MANIFEST = ".kdtool-manifest.json"
MANIFEST_FORMAT = "kdtool.manifest/1"
# the temporary file of an atomic write (``.NAME.PID.HEX.tmp``, or a shard's ``.NAME.tmp``) a killed process left
_TEMPORARY = re.compile(r"^\..+\.tmp$")


def own_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (if needed) as one kdtool owns: from now on every file kdtool writes below it is recorded."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / MANIFEST).is_file():
        _write_manifest(folder, [])
    return folder


def _write_manifest(folder: Path, files: Iterable[str]) -> None:
    text = json.dumps({"format": MANIFEST_FORMAT, "files": sorted(set(files))}, indent=1) + "\n"
    with atomic_path(folder / MANIFEST) as tmp:
        tmp.write_text(text, encoding="utf-8")


def recorded_files(folder: str | os.PathLike) -> set[str] | None:
    """The paths (relative, POSIX) recorded in ``folder``'s manifest; None when it has none (or an unreadable one)."""
    try:
        record = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    files = record.get("files") if isinstance(record, dict) and record.get("format") == MANIFEST_FORMAT else None
    return {str(f) for f in files} if isinstance(files, list) else None


def owning_folder(path: str | os.PathLike) -> Path | None:
    """The nearest folder above ``path`` that kdtool owns (holds a manifest), or None."""
    return next((p for p in Path(os.path.abspath(path)).parents if (p / MANIFEST).is_file()), None)


def record_written(*paths: str | os.PathLike) -> None:
    """Add ``paths`` (files or folders kdtool just wrote) to the manifest of the folder that owns them, if one does."""
    by_owner: dict[Path, list[str]] = {}
    for path in paths:
        path = Path(os.path.abspath(path))
        owner = owning_folder(path) if path.name != MANIFEST else None
        if owner is not None:  # a folder (one a tracker made, even empty) is recorded as ``name/``
            by_owner.setdefault(owner, []).append(
                path.relative_to(owner).as_posix() + ("/" if path.is_dir() and not path.is_symlink() else "")
            )
    for owner, names in by_owner.items():
        known = recorded_files(owner) or set()
        if not set(names) <= known:
            _write_manifest(owner, known | set(names))


def files_below(folder: str | os.PathLike) -> list[str]:
    """Every file (or link, never followed) below ``folder``, as sorted relative POSIX paths."""
    folder = Path(folder)
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [(Path(root) / name).relative_to(folder).as_posix() for name in files]
        found += [(Path(root) / d).relative_to(folder).as_posix() for d in dirs if (Path(root) / d).is_symlink()]
    return sorted(found)


def foreign_files(folder: str | os.PathLike) -> list[str]:
    """Files below the folder kdtool owns that its manifest does not list (kdtool did not write them), sorted.

    A folder without a manifest is all foreign: kdtool cannot tell what in it is its own."""
    known = recorded_files(folder)
    if known is None:
        return files_below(folder)
    files = [f for f in files_below(folder) if f != MANIFEST and f not in known and not _TEMPORARY.match(Path(f).name)]
    holders = {parent.as_posix() for f in known for parent in Path(f).parents} | {f.rstrip("/") for f in known}
    named = holders | {parent.as_posix() for f in files for parent in Path(f).parents}
    folders = [d for d in folders_below(folder) if d not in named]  # a user's own folder without a file in it
    return files + sorted(folders)


def folders_below(folder: str | os.PathLike) -> list[str]:
    """Every folder below ``folder`` (links not followed), as relative POSIX paths."""
    folder = Path(folder)
    return [(Path(root) / d).relative_to(folder).as_posix() for root, dirs, _ in os.walk(folder) for d in dirs
            if not (Path(root) / d).is_symlink()]  # fmt: skip


def remove_recorded(folder: str | os.PathLike) -> None:
    """Remove every file kdtool recorded below ``folder`` (after :func:`foreign_files` found none), its leftover
    temporary files and the folders that leaves empty; ``folder`` stays, owned, with an empty manifest."""
    folder = Path(folder)
    for name in files_below(folder):
        if name != MANIFEST:
            (folder / name).unlink()
    for root, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
        if Path(root) != folder and not any(Path(root).iterdir()):
            Path(root).rmdir()
    _write_manifest(folder, [])


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


# A figure kdtool draws says so in its metadata (PNG Software, PDF and SVG Creator); any other figure is the user's.
FIGURE_MARKER = "kdtool"
_FIGURE_MARKS = {".png": re.compile(rb"tEXtSoftware\x00kdtool"), ".pdf": re.compile(rb"/Creator \(kdtool"),
                 ".svg": re.compile(rb"<dc:creator>\s*<cc:Agent>\s*<dc:title>kdtool")}  # fmt: skip


def written_by_kdtool(path: str | os.PathLike) -> bool:
    """Whether the file ``path`` is one kdtool wrote: recorded in the manifest of a folder kdtool owns, or
    marked as kdtool's: a safetensors file of a ``kdtool.*`` format (a Q artifact), a figure kdtool drew (its
    PNG/PDF/SVG metadata) or a page of ``kdtool report`` (its generator tag)."""
    path = Path(path)
    owner = owning_folder(path)
    if owner is not None and Path(os.path.abspath(path)).relative_to(owner).as_posix() in (recorded_files(owner) or ()):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - (1 << 16)))
            tail = fh.read()  # a PDF keeps its document information near the end
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
    if path.suffix in _FIGURE_MARKS:
        return any(_FIGURE_MARKS[path.suffix].search(part) for part in (head, tail))
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
    check_can_create(path, str(path))
    return path


def check_can_create(path: str | os.PathLike, what: str) -> None:
    """Refuse (one line) a ``path`` that cannot be created, before any work: a folder is made and removed again in
    its nearest existing parent (permission bits alone do not tell: root passes them, /proc and read-only file
    systems still refuse)."""
    parent = next((p for p in Path(path).absolute().parents if p.exists()), Path("."))
    if not parent.is_dir():
        raise KdtoolError(f"cannot write {what}: {parent} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".kdtool-probe-", dir=parent))
    except OSError as exc:
        raise KdtoolError(f"cannot write {what}: {parent} is not writable ({exc.strerror or exc})") from None
