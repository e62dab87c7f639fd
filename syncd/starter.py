"""``syncd init``: the commented starter config shipped inside the package.

config.example.toml lives at the top of the repository, which a plain ``pip install``
does not carry; the same text is package data (syncd/templates/config.toml), and a
test keeps the two identical so the starter never drifts from the documented example.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from syncd.config import DEFAULT_CONFIG_FILE


class StarterExists(Exception):
    """The target file exists and --force was not given: never clobber a working config."""


def template_text() -> str:
    return resources.files("syncd").joinpath("templates", "config.toml").read_text(encoding="utf-8")


def starter_path(path: Path | None) -> Path:
    """A directory (or nothing) means ``syncd.toml`` inside it, the file ``syncd run`` looks for by default."""
    if path is None:
        return Path(DEFAULT_CONFIG_FILE)
    return path / DEFAULT_CONFIG_FILE if path.is_dir() else path


def write_starter(path: Path, *, force: bool = False) -> Path:
    """Write the template to ``path``; mode 0600 because the file may later hold paths to secrets."""
    if path.exists() and not force:
        raise StarterExists(f"{path} already exists: pass --force to overwrite it, or choose another PATH")
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(template_text())
    return path
