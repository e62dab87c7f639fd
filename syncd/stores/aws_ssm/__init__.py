"""AWS SSM Parameter Store, both sides: parameter naming, the daemon's writes, the consumer's reads.

* `layout`: which names are parameter names, the value size limits, what a stored value carries.
* `store`: `SsmStore`, the write side (``type = "aws-ssm"``).
* `read`: `SsmSource`, what `syncd.client` reads ``aws-ssm://`` sources with.

The names below are loaded on first use, so a consumer importing the reader does
not load the daemon's side (``syncd.stores.aws_ssm:SsmStore`` is the entry point).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncd.stores.aws_ssm.layout import MAX_DEPTH, MAX_VALUE, parameter_name_problem
    from syncd.stores.aws_ssm.read import SsmSource
    from syncd.stores.aws_ssm.store import SsmStore

#: Each submodule and the names it exports here.
_EXPORTS = {
    "layout": ("MAX_DEPTH", "MAX_VALUE", "parameter_name_problem"),
    "read": ("SsmSource",),
    "store": ("SsmStore",),
}
_HOMES = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "MAX_DEPTH",
    "MAX_VALUE",
    "SsmSource",
    "SsmStore",
    "parameter_name_problem",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
