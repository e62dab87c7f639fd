"""File store: one file per target in a directory (a tmpfs or a shared volume).

Writes are atomic (temp file in the same directory, fsync, rename, fsync of the
directory) so a reader sees the old token or the new one, never half of one.
``raw`` targets hold the bare token; its public fields go to a hidden sidecar
``.<name>.syncd.json`` so ``read`` (start-up adoption, ``syncd inspect``) still
knows when it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncd.payload import PayloadError, TokenPayload
from syncd.stores.base import FatalStoreError, Finding, StoreError, TransientStoreError, WriteResult

if TYPE_CHECKING:
    from syncd.config import FileStoreConfig, StoreConfig, TargetConfig


def _oserror(exc: OSError, action: str, path: Path) -> StoreError:
    """Translate an OS error into what the operator has to do about it."""
    code = errno.errorcode.get(exc.errno or 0, "OSError")
    if exc.errno == errno.ENOSPC:
        return TransientStoreError(
            f"cannot {action} {path}: the disk is full (ENOSPC); free space on that volume. "
            "The previous token file is left untouched.",
            code=code,
        )
    if exc.errno == errno.EDQUOT:
        return TransientStoreError(f"cannot {action} {path}: disk quota exceeded (EDQUOT)", code=code)
    if exc.errno == errno.EROFS:
        return FatalStoreError(
            f"cannot {action} {path}: the file system is read-only (EROFS); mount a writable volume there "
            "(in Kubernetes an emptyDir, since the root file system is read-only)",
            code=code,
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return FatalStoreError(
            f"cannot {action} {path}: permission denied for uid {os.getuid()}; give that user write access "
            "to the directory (or set fsGroup in Kubernetes)",
            code=code,
        )
    if exc.errno in (errno.ENOTDIR, errno.EISDIR, errno.ENOENT):
        return FatalStoreError(f"cannot {action} {path}: {exc.strerror} ({code}); fix the store directory", code=code)
    return TransientStoreError(f"cannot {action} {path}: {exc.strerror or exc} ({code})", code=code)


class FileStore:
    """``type = "file"``: DESIGN.md Store interface over a local directory."""

    def __init__(self, name: str, config: FileStoreConfig) -> None:
        self.name = name
        self.config = config
        self.directory = Path(config.directory)
        self._paths: dict[str, Path] = {}  # keys come from the config: check each once

    @classmethod
    def from_config(cls, name: str, config: StoreConfig) -> FileStore:
        from syncd.config import FileStoreConfig

        if not isinstance(config, FileStoreConfig):
            raise TypeError(f"store {name!r}: expected a file store config")
        return cls(name, config)

    # ------------------------------------------------------------------ paths

    def path_for(self, key: str) -> Path:
        """The file for ``key``; a key that escapes the directory is refused.

        Resolving is a realpath with an lstat per component (~50 us), so it is done once
        per key (keys are fixed by the config). A component replaced by a symlink after
        that first check is not re-checked: the directory is syncd's own (mode 0700), and
        whoever can swap its entries already runs as syncd.
        """
        cached = self._paths.get(key)
        if cached is not None:
            return cached
        path = self._check_path(key)
        self._paths[key] = path
        return path

    def _check_path(self, key: str) -> Path:
        if not key or key.startswith("/") or "\x00" in key:
            raise FatalStoreError(f"store {self.name!r}: key {key!r} must be a relative file name")
        root = self.directory.resolve()
        path = (root / key).resolve()
        if path == root or root not in path.parents:
            raise FatalStoreError(
                f"store {self.name!r}: key {key!r} escapes the store directory {root}; use a name inside it"
            )
        return path

    @staticmethod
    def sidecar_for(path: Path) -> Path:
        return path.with_name(f".{path.name}.syncd.json")

    # ------------------------------------------------------------------ write

    def _ensure_dir(self, path: Path) -> None:
        if path.parent.is_dir():
            return
        if not self.config.create_directory:
            raise FatalStoreError(
                f"store {self.name!r}: directory {path.parent} does not exist and create_directory is false"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=self.config.dir_mode)
        except OSError as exc:
            raise _oserror(exc, "create directory", path.parent) from None

    def _atomic_write(self, path: Path, data: bytes, mode: int) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            try:
                os.fchmod(fd, mode)
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                if self.config.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise _oserror(exc, "write", path) from None
        if self.config.fsync:
            try:
                dfd = os.open(path.parent, os.O_RDONLY)
            except OSError:
                return
            try:
                os.fsync(dfd)
            except OSError:
                pass  # some file systems refuse fsync on a directory; the rename is still atomic
            finally:
                os.close(dfd)

    def _write_sync(self, key: str, payload: TokenPayload, target: TargetConfig | None) -> WriteResult:
        path = self.path_for(key)
        self._ensure_dir(path)
        fmt = target.format if target else "json"
        mode = target.mode if target and target.mode is not None else self.config.mode
        if fmt == "raw":
            meta = json.dumps(payload.public_dict(), separators=(",", ":")).encode()
            self._atomic_write(self.sidecar_for(path), meta, mode)
        self._atomic_write(path, payload.render(fmt).encode(), mode)
        return WriteResult(written=True, location=str(path))

    async def write(self, key: str, payload: TokenPayload, *, target: TargetConfig | None = None) -> WriteResult:
        # Local file I/O is fast; a thread keeps an fsync on a slow disk off the event loop.
        return await asyncio.to_thread(self._write_sync, key, payload, target)

    # ------------------------------------------------------------------ read

    def _read_sync(self, key: str, target: TargetConfig | None) -> TokenPayload | None:
        path = self.path_for(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except UnicodeDecodeError:
            raise FatalStoreError(f"{path}: not UTF-8 text (not a syncd payload)", code="payload") from None
        except OSError as exc:
            raise _oserror(exc, "read", path) from None
        source = str(path)
        fmt = target.format if target else "json"
        try:
            if fmt == "raw":
                try:
                    meta: Any = json.loads(self.sidecar_for(path).read_text(encoding="utf-8"))
                except FileNotFoundError:
                    raise PayloadError(f"{source}: raw token without its metadata sidecar") from None
                except (OSError, ValueError) as exc:
                    raise PayloadError(f"{source}: unreadable metadata sidecar ({exc.__class__.__name__})") from None
                return TokenPayload.from_metadata(text.strip(), meta, source=source)
            return TokenPayload.from_json(text, source=source)
        except PayloadError as exc:
            raise FatalStoreError(str(exc), code="payload") from None

    async def read(self, key: str, *, target: TargetConfig | None = None) -> TokenPayload | None:
        return await asyncio.to_thread(self._read_sync, key, target)

    async def aclose(self) -> None:
        return None

    def plan(self, key: str, writes_per_day: float, *, target: TargetConfig | None = None) -> list[Finding]:
        findings: list[Finding] = []
        subject = f"{self.name}:{key}"
        try:
            path = self.path_for(key)
        except StoreError as exc:
            return [Finding("error", subject, str(exc))]
        mode = target.mode if target and target.mode is not None else self.config.mode
        if mode & 0o007:
            findings.append(
                Finding(
                    "warning",
                    subject,
                    f"mode {mode:04o} lets every user on the host read the token",
                    "use 0600 or 0640",
                )
            )
        existing = next((p for p in [path.parent, *path.parents] if p.exists()), None)
        if (
            existing is not None
            and not os.access(existing, os.W_OK)
            and (existing == path.parent or self.config.create_directory)
        ):
            findings.append(
                Finding(
                    "warning",
                    subject,
                    f"{existing} is not writable by uid {os.getuid()}",
                    "fix the directory permissions or mount a writable volume",
                )
            )
        return findings
