"""Package names loaded on first use (PEP 562 module ``__getattr__``).

A store package re-exports the names of its submodules, but importing the package
must not import them all: a consumer that imports a reader would otherwise load the
daemon's side (boto3 plumbing, hvac) it never uses.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any


def lazy_exports(
    package: str,
    exports: Mapping[str, tuple[str, ...]],
    *,
    keep_in: MutableMapping[str, Any] | None = None,
) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: each name is imported from its submodule when first asked for.

    ``exports`` maps each submodule (relative to ``package``) to the names it exports there.
    With ``keep_in`` (the package's ``globals()``) a loaded name becomes a plain module attribute.
    """
    homes = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{home}"), name)
        if keep_in is not None:
            keep_in[name] = value
        return value

    return __getattr__
