"""How syncd lays out a target in a directory, for the writer and the reader alike.

A target's key is a relative path under the store directory (``team/calm.json``);
the file holds ``payload.render(format)``. A ``raw`` target holds the bare token,
and its public fields (expiry, fingerprint, ...) go to the hidden sidecar
``.<name>.syncd.json`` beside it, so a reader (the daemon at start-up, ``syncd
inspect``, a consumer) still knows when it expires. Each file is written through a
temp file ``.<name>.<8 hex>.tmp`` in the same directory and renamed over it.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from syncd.payload import TokenPayload

NAME_MAX = 255  # bytes in one file name on Linux file systems (ext4, xfs, tmpfs)
_TEMP_EXTRA = len(".") + len(".12345678.tmp")  # "." + name + "." + 8 hex + ".tmp"
_SIDECAR_EXTRA = len(".") + len(".syncd.json")


def sidecar_name(name: str) -> str:
    """The hidden metadata file of the ``raw`` token file ``name``."""
    return f".{name}.syncd.json"


def sidecar_for(path: Path) -> Path:
    return path.with_name(sidecar_name(path.name))


def sidecar_document(payload: TokenPayload) -> bytes:
    """What the sidecar holds: the payload's public fields, never the token."""
    return json.dumps(payload.public_dict(), separators=(",", ":")).encode()


def temp_name(name: str) -> str:
    """A fresh temp file name for writing ``name`` (hidden, unique, in the same directory)."""
    return f".{name}.{secrets.token_hex(4)}.tmp"


def key_problem(key: str, fmt: str = "json") -> str | None:
    """Why ``key`` cannot name a file under the store directory, or None (pure; used by the config check).

    Each component must be a plain name (no ``..``, no empty part) and short enough that
    the temp file next to it (and the ``raw`` sidecar's temp file) fits ``NAME_MAX``:
    a name that fits but whose temp file does not would fail every write, forever.
    """
    if not key or key.startswith("/") or "\x00" in key:
        return "must be a relative file name inside the store directory"
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "must not contain empty, '.' or '..' components (it must stay inside the store directory)"
    return name_length_problem(key, fmt)


def name_length_problem(key: str, fmt: str = "json") -> str | None:
    """The part of `key_problem` about ``NAME_MAX``: a configuration error (exit 2), not a write failing forever."""
    parts = key.split("/")
    for part in parts[:-1]:
        if len(part.encode()) > NAME_MAX:
            return f"directory name {part[:20]!r}... is longer than {NAME_MAX} bytes"
    extra = _TEMP_EXTRA + (_SIDECAR_EXTRA if fmt == "raw" else 0)
    size = len(parts[-1].encode())
    if size + extra > NAME_MAX:
        return (
            f"file name is {size} bytes; with its temp file name (+{extra}) it exceeds the {NAME_MAX}-byte "
            f"file-name limit: use a name of at most {NAME_MAX - extra} bytes"
        )
    return None
