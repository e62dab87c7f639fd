"""File store: one file per target in a directory (a tmpfs or a shared volume).

Writes are atomic (temp file in the same directory, fsync, rename, fsync of the
directory) so a reader sees the old token or the new one, never half of one.
``raw`` targets hold the bare token; its public fields go to a hidden sidecar
``.<name>.syncd.json`` so ``read`` (start-up adoption, ``syncd inspect``) still
knows when it expires (layout.py owns these names; read.py is the consumer's side).

Symlinks are never followed below the configured directory. The directory is
opened once (``O_DIRECTORY | O_NOFOLLOW``) and every name is resolved relative to
that descriptor, one component at a time with ``O_NOFOLLOW``: a file or
subdirectory swapped for a symlink is refused (``ELOOP``), never written or read
through. The temp file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and
renamed with ``src_dir_fd``/``dst_dir_fd``.

If the configured directory itself is replaced after start: before each use the
store compares the path with the directory it holds open (one ``lstat``). A
symlink there is refused with an error naming it (the daemon does not write
into a renamed-away directory that consumers no longer see, nor through the
link). A missing directory is created again (``create_directory``); a real
directory that replaced it is opened again (without following links) only if
it has the owner of the one opened before, so a directory planted by another
user is refused too.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncd import logs
from syncd.payload import PayloadError, TokenPayload
from syncd.stores.base import FatalStoreError, Finding, StoreError, WriteResult
from syncd.stores.file import layout
from syncd.stores.file.errors import oserror
from syncd.stores.file.layout import key_problem
from syncd.stores.file.plan import findings as target_findings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from syncd.config import FileStoreConfig, StoreConfig, TargetConfig
    from syncd.stores.batch import ReadItem, ReadResult

log = logs.get_logger("syncd.stores.file")

MAX_READ = 1 << 20  # a token file is a few KiB; a bigger one is not ours
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LINK_ERRNOS = (errno.ELOOP, errno.ENOTDIR)


class FileStore:
    """``type = "file"``: the Store interface (docs/design.md) over a local directory."""

    #: ``read_many`` reads its files one after another in one thread (syncd.stores.batch).
    reads_serially = True

    def __init__(self, name: str, config: FileStoreConfig) -> None:
        self.name = name
        self.config = config
        self.directory = Path(config.directory)
        self._lock = threading.Lock()
        self._dir_fd: int | None = None
        self._dir_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the directory held open
        self._dir_uid: int | None = None
        # Descriptors of replaced directories: closed at aclose only, since a write in another
        # thread may still use one and a closed number could be reused by an unrelated open.
        self._retired: list[int] = []
        self._planned_directory = False  # the directory's own findings are given once per store
        # Checked paths per key: keys come from the configuration (a bounded set), and every write
        # asked twice. Only the check and the join are kept; nothing here touches the disk.
        self._paths: dict[str, Path] = {}

    @classmethod
    def from_config(cls, name: str, config: StoreConfig) -> FileStore:
        from syncd.config import FileStoreConfig

        if not isinstance(config, FileStoreConfig):
            raise TypeError(f"store {name!r}: expected a file store config")
        return cls(name, config)

    # ------------------------------------------------------------------ paths

    def path_for(self, key: str) -> Path:
        """The path ``key`` names (for messages and ``location``); a key that escapes is refused."""
        path = self._paths.get(key)
        if path is not None:
            return path
        problem = key_problem(key)
        if problem is not None:
            raise FatalStoreError(f"store {self.name!r}: key {key!r} {problem}")
        path = self._paths[key] = self.directory / key
        return path

    @staticmethod
    def sidecar_for(path: Path) -> Path:
        return layout.sidecar_for(path)

    def _root(self, *, create: bool = True) -> int | None:
        """The directory's descriptor, re-opened (never through a link) if the path now names another one.

        None when the directory does not exist and ``create`` is false (a read: nothing stored).
        """
        with self._lock:
            try:
                st: os.stat_result | None = os.lstat(self.directory)
            except FileNotFoundError:
                st = None
            except OSError as exc:
                raise oserror(exc, "open directory", self.directory) from None
            if self._dir_fd is not None and st is not None and (st.st_dev, st.st_ino) == self._dir_id:
                return self._dir_fd
            if st is not None and stat.S_ISLNK(st.st_mode):
                since = " (it replaced the directory opened earlier)" if self._dir_fd is not None else ""
                raise FatalStoreError(
                    f"store {self.name!r}: {self.directory} is a symbolic link{since}; syncd does not follow a link "
                    "there: configure the real directory, or remove the link",
                    code="ELOOP",
                )
            if st is None:
                if not create:
                    return None
                self._create_directory()
            try:
                fd = os.open(self.directory, _DIR_FLAGS)
            except OSError as exc:
                raise oserror(exc, "open directory", self.directory) from None
            opened = os.fstat(fd)
            if self._dir_uid is not None and opened.st_uid != self._dir_uid:
                os.close(fd)
                raise FatalStoreError(
                    f"store {self.name!r}: {self.directory} was replaced by a directory owned by uid {opened.st_uid} "
                    f"(the one opened before was owned by uid {self._dir_uid}); refusing to write tokens into it: "
                    "restore the directory",
                    code="replaced",
                )
            if self._dir_fd is not None:
                self._retired.append(self._dir_fd)
                log.warning("file_store_reopened", store=self.name, directory=str(self.directory))
            self._dir_fd, self._dir_id, self._dir_uid = fd, (opened.st_dev, opened.st_ino), opened.st_uid
            return fd

    def _create_directory(self) -> None:
        if not self.config.create_directory:
            raise FatalStoreError(
                f"store {self.name!r}: directory {self.directory} does not exist and create_directory is false"
            )
        try:
            self.directory.parent.mkdir(parents=True, exist_ok=True, mode=self.config.dir_mode)
            os.mkdir(self.directory, self.config.dir_mode)
        except FileExistsError:
            pass  # made meanwhile by someone else: opened below without following a link
        except OSError as exc:
            raise oserror(exc, "create directory", self.directory) from None

    def _dir_mode(self, fd: int) -> int | None:
        try:
            return stat.S_IMODE(os.fstat(fd).st_mode)
        except OSError:
            return None

    def _walk(self, key: str, *, create: bool) -> tuple[int, str, bool] | None:
        """(descriptor of the file's directory, file name, whether the caller must close it).

        None when reading (``create`` false) and a directory on the way does not exist.
        """
        self.path_for(key)
        root = self._root(create=create)
        if root is None:
            return None
        fd = root
        *dirs, name = key.split("/")
        owned = False
        here = self.directory
        for part in dirs:
            here = here / part
            try:
                try:
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        if owned:
                            os.close(fd)
                        return None
                    if not self.config.create_directory:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, self.config.dir_mode, dir_fd=fd)
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if owned:
                    os.close(fd)
                if exc.errno in _LINK_ERRNOS:
                    raise FatalStoreError(
                        f"store {self.name!r}: {here} is a symbolic link or not a directory; syncd does not follow "
                        "links in its store directory: remove it (syncd then creates the directory)",
                        code=errno.errorcode.get(exc.errno or 0, "ELOOP"),
                    ) from None
                raise oserror(exc, "open directory", here, self._dir_mode(fd)) from None
            if owned:
                os.close(fd)
            fd, owned = nxt, True
        return fd, name, owned

    # ------------------------------------------------------------------ write

    def _atomic_write(self, dfd: int, name: str, path: Path, data: bytes, mode: int) -> None:
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise oserror(exc, "write", path, self._dir_mode(dfd)) from None
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise FatalStoreError(
                f"store {self.name!r}: {path} is a symbolic link; syncd does not write through (or over) a link in "
                "its store directory: remove it (syncd then writes a regular file there)",
                code="ELOOP",
            )
        tmp = layout.temp_name(name)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        except OSError as exc:
            raise oserror(exc, "write", path, self._dir_mode(dfd)) from None
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
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise oserror(exc, "write", path, self._dir_mode(dfd)) from None
        if self.config.fsync:
            # Some file systems refuse fsync on a directory; the rename is still atomic.
            with contextlib.suppress(OSError):
                os.fsync(dfd)

    def _write_sync(self, key: str, payload: TokenPayload, target: TargetConfig | None) -> WriteResult:
        path = self.path_for(key)
        fmt = target.format if target else "json"
        mode = target.mode if target and target.mode is not None else self.config.mode
        walked = self._walk(key, create=True)
        assert walked is not None  # creating: every directory exists or an error was raised
        dfd, name, owned = walked
        try:
            if fmt == "raw":
                meta = layout.sidecar_document(payload)
                self._atomic_write(dfd, layout.sidecar_name(name), self.sidecar_for(path), meta, mode)
            self._atomic_write(dfd, name, path, payload.render(fmt).encode(), mode)
        finally:
            if owned:
                os.close(dfd)
        return WriteResult(written=True, location=str(path))

    async def write(self, key: str, payload: TokenPayload, *, target: TargetConfig | None = None) -> WriteResult:
        # Local file I/O is fast; a thread keeps an fsync on a slow disk off the event loop.
        return await asyncio.to_thread(self._write_sync, key, payload, target)

    # ------------------------------------------------------------------ read

    def _read_file(self, dfd: int, name: str, path: Path) -> str | None:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dfd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise oserror(exc, "read", path, self._dir_mode(dfd)) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise FatalStoreError(f"{path}: not a regular file (not a syncd payload)", code="payload")
            chunks: list[bytes] = []
            size = 0
            while chunk := os.read(fd, 65536):
                size += len(chunk)
                if size > MAX_READ:
                    raise FatalStoreError(f"{path}: larger than {MAX_READ} bytes (not a syncd payload)", code="payload")
                chunks.append(chunk)
        except OSError as exc:
            raise oserror(exc, "read", path) from None
        finally:
            os.close(fd)
        try:
            return b"".join(chunks).decode("utf-8")
        except UnicodeDecodeError:
            raise FatalStoreError(f"{path}: not UTF-8 text (not a syncd payload)", code="payload") from None

    def _read_sync(self, key: str, target: TargetConfig | None) -> TokenPayload | None:
        path = self.path_for(key)
        walked = self._walk(key, create=False)
        if walked is None:
            return None  # the directory (or a subdirectory) does not exist (yet): no token there
        dfd, name, owned = walked
        try:
            text = self._read_file(dfd, name, path)
            if text is None:
                return None
            source = str(path)
            fmt = target.format if target else "json"
            try:
                if fmt == "raw":
                    side = self.sidecar_for(path)
                    try:
                        meta_text = self._read_file(dfd, side.name, side)
                        meta: Any = json.loads(meta_text) if meta_text is not None else None
                    except (StoreError, ValueError) as exc:
                        raise PayloadError(
                            f"{source}: unreadable metadata sidecar ({exc.__class__.__name__})"
                        ) from None
                    if meta is None:
                        raise PayloadError(f"{source}: raw token without its metadata sidecar")
                    return TokenPayload.from_metadata(text.strip(), meta, source=source)
                return TokenPayload.from_json(text, source=source)
            except PayloadError as exc:
                raise FatalStoreError(str(exc), code="payload") from None
        finally:
            if owned:
                os.close(dfd)

    async def read(self, key: str, *, target: TargetConfig | None = None) -> TokenPayload | None:
        return await asyncio.to_thread(self._read_sync, key, target)

    async def read_many(self, items: Sequence[ReadItem]) -> list[ReadResult]:
        """Optional batch read (syncd.stores.batch): the files one after the other, in one thread hop
        (``reads_serially``: the caller sends one batch at a time)."""
        return await asyncio.to_thread(self._read_many_sync, items)

    def _read_many_sync(self, items: Sequence[ReadItem]) -> list[ReadResult]:
        results: list[ReadResult] = []
        for key, target in items:
            try:
                results.append(self._read_sync(key, target))
            except Exception as exc:  # one file's failure is that item's result
                results.append(exc)
        return results

    async def aclose(self) -> None:
        with self._lock:
            for fd in [*self._retired, *([self._dir_fd] if self._dir_fd is not None else [])]:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._retired, self._dir_fd, self._dir_id = [], None, None

    def plan(self, key: str, writes_per_day: float, *, target: TargetConfig | None = None) -> list[Finding]:
        first = not self._planned_directory  # about the directory, not the key: said once per store
        self._planned_directory = True
        return target_findings(self.name, self.config, self.directory, key, target, with_directory=first)
