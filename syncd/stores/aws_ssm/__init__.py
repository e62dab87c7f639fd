"""AWS SSM Parameter Store, both sides: parameter naming, the daemon's writes, the consumer's reads.

* `layout`: which names are parameter names, the value size limits, what a stored value carries.
* `store`: `SsmStore`, the write side (``type = "aws-ssm"``).
* `read`: `SsmSource`, what `syncd.client` reads ``aws-ssm://`` sources with.

The names below are loaded on first use, so a consumer importing the reader does
not load the daemon's side (``syncd.stores.aws_ssm:SsmStore`` is the entry point).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncd.stores._lazy import lazy_exports

if TYPE_CHECKING:
    from syncd.stores.aws_ssm.layout import MAX_DEPTH, MAX_VALUE, parameter_name_problem
    from syncd.stores.aws_ssm.read import SsmSource
    from syncd.stores.aws_ssm.store import SsmStore

#: Each submodule and the names it exports here.
__getattr__ = lazy_exports(
    __name__,
    {
        "layout": ("MAX_DEPTH", "MAX_VALUE", "parameter_name_problem"),
        "read": ("SsmSource",),
        "store": ("SsmStore",),
    },
)

__all__ = [
    "MAX_DEPTH",
    "MAX_VALUE",
    "SsmSource",
    "SsmStore",
    "parameter_name_problem",
]
