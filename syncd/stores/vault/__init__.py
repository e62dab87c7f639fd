"""Vault / OpenBao KV (``type = "vault"``): both sides of one layout.

- :mod:`.layout`  where a token goes and how it comes back (paths, data document, custom_metadata); pure
- :mod:`.errors`  what a failed request means: transient or fatal, and the message that says the fix
- :mod:`.auth`    the store's own Vault token: login, renewal, login again
- :mod:`.kv`      KV v1 / v2 reads and writes for the store, check-and-set
- :mod:`.store`   :class:`VaultStore`, the write side the daemon uses
- :mod:`.read`    :class:`~syncd.stores.vault.read.VaultSource`, the consumer reader's side

The names below stay importable from ``syncd.stores.vault`` (the ``syncd.stores`` entry point
is ``syncd.stores.vault:VaultStore``). Those that need hvac are loaded on first use, so a
consumer that imports the reader does not import hvac until it reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncd.stores._lazy import lazy_exports
from syncd.stores.vault.layout import custom_metadata_for, data_document, payload_from_kv

if TYPE_CHECKING:
    from syncd.stores.vault.auth import Lease
    from syncd.stores.vault.errors import Context, Op, classify_error, denied_message
    from syncd.stores.vault.kv import resolve_conflict
    from syncd.stores.vault.store import VaultStore, is_loopback_url

#: Each submodule and the names it exports here; once loaded, a name is a plain module attribute.
__getattr__ = lazy_exports(
    __name__,
    {
        "errors": ("Context", "Op", "classify_error", "denied_message"),
        "auth": ("Lease",),
        "kv": ("resolve_conflict",),
        "store": ("VaultStore", "is_loopback_url"),
    },
    keep_in=globals(),
)

__all__ = [
    "Context",
    "Lease",
    "Op",
    "VaultStore",
    "classify_error",
    "custom_metadata_for",
    "data_document",
    "denied_message",
    "is_loopback_url",
    "payload_from_kv",
    "resolve_conflict",
]
