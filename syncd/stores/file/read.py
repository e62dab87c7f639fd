"""The consumer's side of the file store: the JSON payload, or a bare token and its sidecar.

Plain reads through the path (a consumer does not hold the directory open the way
the daemon does); the format is told by the content, so the URL needs no option.
"""

from __future__ import annotations

import os
from pathlib import Path

from syncd.stores.file.layout import sidecar_for
from syncd.stores.reading import (
    Fetched,
    RawRead,
    Source,
    TokenFormatError,
    TokenNotFoundError,
    TokenStoreError,
    fetch_untorn,
    from_doc,
    loads,
)


class FileSource(Source):
    """A file written by the syncd file store: the JSON payload, or a bare token plus sidecar."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sidecar = sidecar_for(path)
        self.description = f"file://{path}"

    def _read(self, path: Path) -> str | None:
        src = self.description
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise TokenStoreError(f"{src}: {path} is a directory, not a token file", src) from None
        except PermissionError:
            raise TokenStoreError(
                f"{src}: permission denied reading {path} as uid {os.getuid()}; syncd writes token files "
                "0600 by default: run the consumer as the same user, or set the target's mode (e.g. 0640) and group",
                src,
            ) from None
        except OSError as exc:
            raise TokenStoreError(
                f"{src}: cannot read {path} ({exc.strerror or exc.__class__.__name__})", src
            ) from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise TokenFormatError(f"{src}: {path} is not UTF-8 text (not a syncd payload)", src) from None

    def fetch(self, now: float) -> Fetched:
        return fetch_untorn(self._read_once, self.description)

    def _read_once(self) -> Fetched | RawRead:
        src = self.description
        text = self._read(self.path)
        if text is None:
            raise TokenNotFoundError(
                f"{src}: no such file; syncd has not written this target yet, or the path is wrong "
                "(`syncd status` lists each target)",
                src,
            )
        body = text.strip()
        if not body:
            raise TokenFormatError(f"{src}: the file is empty (syncd writes atomically, so this is not ours)", src)
        if body.startswith(("{", "[")):  # JSON; a bare token never starts with a bracket
            return from_doc(loads(body, src), src)
        # format = "raw": the bare token; the public fields are in the hidden sidecar, written before it.
        meta_text = self._read(self.sidecar)
        if meta_text is None:
            raise TokenFormatError(
                f'{src}: holds a bare token (format = "raw") but its metadata file {self.sidecar} is missing, '
                'so its expiry is unknown; use format = "json" for readers, or keep the sidecar beside it',
                src,
            )
        meta = loads(meta_text, f"{src} (sidecar {self.sidecar.name})")
        return RawRead(body, meta, f"metadata file {self.sidecar.name}")
