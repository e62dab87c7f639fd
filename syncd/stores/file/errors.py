"""The file store's translation of an OS error into what the operator has to do about it."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from syncd.stores.base import FatalStoreError, StoreError, TransientStoreError


def who() -> str:
    uid = os.geteuid()
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _mode_of(path: Path) -> int | None:
    """The mode of the directory a failed operation was in (best effort, for the message)."""
    for candidate in (path, path.parent):
        try:
            st = os.stat(candidate, follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            return stat.S_IMODE(st.st_mode)
    return None


def oserror(exc: OSError, action: str, path: Path, mode: int | None = None) -> StoreError:
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
            f"cannot {action} {path} as {who()}: the file system is read-only (EROFS); mount a writable volume "
            "there (in Kubernetes an emptyDir, since the root file system is read-only)",
            code=code,
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        if mode is None:
            mode = _mode_of(path)
        shown = f"mode {mode:04o}" if mode is not None else "a mode that could not be read"
        return FatalStoreError(
            f"cannot {action} {path}: permission denied ({code}) for {who()}; the directory has {shown}: give "
            "that user write access to it (chown/chmod, or set fsGroup in Kubernetes)",
            code=code,
        )
    if exc.errno == errno.ELOOP:
        return FatalStoreError(
            f"cannot {action} {path}: it is a symbolic link and syncd does not follow links in its store "
            "directory; remove the link (syncd then writes a regular file there)",
            code=code,
        )
    if exc.errno == errno.ENAMETOOLONG:
        return FatalStoreError(f"cannot {action} {path}: the name is too long ({code}); use a shorter key", code=code)
    if exc.errno in (errno.ENOTDIR, errno.EISDIR, errno.ENOENT):
        return FatalStoreError(f"cannot {action} {path}: {exc.strerror} ({code}); fix the store directory", code=code)
    return TransientStoreError(f"cannot {action} {path}: {exc.strerror or exc} ({code})", code=code)
