"""The file store, both sides: file names and the raw sidecar, the daemon's writes, the consumer's reads.

* `layout`: which keys name files, the sidecar and temp file names, what the sidecar holds.
* `store`: `FileStore`, the write side (``type = "file"``), with `errors` for OS errors.
* `read`: `FileSource`, what `syncd.client` reads ``file://`` sources with.

The names below are loaded on first use, so a consumer importing the reader does
not load the daemon's side (``syncd.stores.file:FileStore`` is the entry point;
the config check imports ``name_length_problem``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncd.stores._lazy import lazy_exports

if TYPE_CHECKING:
    from syncd.stores.file.layout import NAME_MAX, key_problem, name_length_problem
    from syncd.stores.file.read import FileSource
    from syncd.stores.file.store import MAX_READ, FileStore

#: Each submodule and the names it exports here.
__getattr__ = lazy_exports(
    __name__,
    {
        "layout": ("NAME_MAX", "key_problem", "name_length_problem"),
        "read": ("FileSource",),
        "store": ("FileStore", "MAX_READ"),
    },
)

__all__ = [
    "MAX_READ",
    "NAME_MAX",
    "FileSource",
    "FileStore",
    "key_problem",
    "name_length_problem",
]
