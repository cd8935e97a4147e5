"""Credentials never leave the process: URIs in recorded options, command lines and messages lose their secrets.

A URI's user-info (``http://user:token@host/`` → ``http://host/``) and its query parameters that carry a secret
(``?token=...``, ``api_key``, ``password``, ``sig`` ...) are removed wherever kdtool records, logs or prints an
option or a command line (``config.json``, trackers, the HTML report, warnings). It applies to every string
value, not to a list of options, so a future option is covered too. MLflow and most servers also take
credentials from the environment (``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD``), which kdtool never records.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_URI = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_SECRET_WORDS = r"token|key|secret|passw|pwd|auth|sig|credential|session"
_SECRET_NAME = re.compile(_SECRET_WORDS, re.IGNORECASE)
# a secret query parameter outside a whole URI (a library's message quoting only the path: ``url: /?api_key=...``)
_LOOSE_SECRET = re.compile(rf"(?P<name>[?&][^=&\s#'\"]*(?:{_SECRET_WORDS})[^=&\s#'\"]*=)[^&\s#'\"]+", re.IGNORECASE)


def _clean_uri(uri: str) -> str:
    """``uri`` without its user-info and secret query parameters (unchanged, byte for byte, when it has neither)."""
    parts = urlsplit(uri)
    netloc = parts.netloc.rpartition("@")[2]
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(name, value) for name, value in pairs if not _SECRET_NAME.search(name)]
    if netloc == parts.netloc and len(kept) == len(pairs):
        return uri
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(kept), parts.fragment))


def redact(text: str) -> str:
    """``text`` with every URI's user-info and secret query parameters removed."""

    def clean(match: re.Match) -> str:
        uri = match.group(0)
        trailing = len(uri) - len(uri.rstrip(").,;:!?]"))  # punctuation of the text around it, not of the URI
        return _clean_uri(uri[: len(uri) - trailing]) + uri[len(uri) - trailing :]

    return _LOOSE_SECRET.sub(r"\g<name>***", _URI.sub(clean, text))


def redact_values(record: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``record`` with :func:`redact` applied to every string value (nested too), and the keys it changed."""
    changed: list[str] = []

    def clean(key: str, value: Any) -> Any:
        if isinstance(value, str):
            cleaned = redact(value)
            if cleaned != value:
                changed.append(key)
            return cleaned
        if isinstance(value, Mapping):
            return {k: clean(f"{key}.{k}", v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(key, v) for v in value]
        return value

    return {key: clean(key, value) for key, value in record.items()}, changed
