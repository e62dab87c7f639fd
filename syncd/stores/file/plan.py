"""`syncd check` for a file store: findings about a target's key and mode and about the directory."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from syncd.stores.base import Finding
from syncd.stores.file.errors import who
from syncd.stores.file.layout import key_problem

if TYPE_CHECKING:
    from syncd.config import FileStoreConfig, TargetConfig


def findings(
    name: str,
    config: FileStoreConfig,
    directory: Path,
    key: str,
    target: TargetConfig | None,
    *,
    with_directory: bool,
) -> list[Finding]:
    """What `syncd check` says about one file target: its key, its mode, whether its directory is writable."""
    found: list[Finding] = []
    subject = f"{name}:{key}"
    fmt = target.format if target else "json"
    problem = key_problem(key, fmt)
    if problem is not None:
        return [Finding("error", subject, f"key {key!r} {problem}")]
    mode = target.mode if target and target.mode is not None else config.mode
    if mode & 0o007:
        found.append(
            Finding(
                "warning",
                subject,
                f"mode {mode:04o} lets every user on the host read the token",
                "use 0600 or 0640",
            )
        )
    if with_directory:
        found.extend(directory_findings(name, directory))
    # Strings, not Paths: this runs once per target at start-up (10,000 at 10,000 credentials).
    # Absolute, so that a relative directory that does not exist yet still has an existing ancestor.
    parent = os.path.dirname(os.path.join(os.path.abspath(directory), key))
    existing = _nearest_existing(parent)
    if existing is not None and not os.access(existing, os.W_OK) and (existing == parent or config.create_directory):
        found.append(
            Finding(
                "warning",
                subject,
                f"{existing} is not writable by {who()}",
                "fix the directory permissions or mount a writable volume",
            )
        )
    return found


def directory_findings(name: str, directory: Path) -> list[Finding]:
    """The store directory itself: a symbolic link (refused) or writable by others (warned)."""
    try:
        st = os.lstat(directory)
    except OSError:
        return []
    subject = f"{name} ({directory})"
    if stat.S_ISLNK(st.st_mode):
        return [
            Finding(
                "error",
                subject,
                f"the store directory {directory} is a symbolic link; syncd does not follow it",
                f"set directory to the real path ({os.path.realpath(directory)})",
            )
        ]
    if stat.S_IMODE(st.st_mode) & 0o022:
        return [
            Finding(
                "warning",
                subject,
                f"the store directory {directory} is group/world-writable (mode "
                f"{stat.S_IMODE(st.st_mode):04o}): another user can replace token files or plant links there",
                f"chmod 0700 {directory} (dir_mode) or use a directory only syncd can write",
            )
        ]
    return []


def _nearest_existing(directory: str) -> str | None:
    """``directory`` or its nearest ancestor that exists (one stat when it exists, as it mostly does)."""
    while not os.path.exists(directory):
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent
    return directory
