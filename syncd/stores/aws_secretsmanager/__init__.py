"""AWS Secrets Manager, both sides: how a target is laid out, the daemon's writes, the consumer's reads.

* `layout`: slot secret names, the slot index document, which slot is freshest.
* `store`: `SecretsManagerStore`, the write side (``type = "aws-secretsmanager"``), over
  `calls` (each API call, and the memory of what each secret holds), `errors` and `plan`.
* `read`: `SecretsManagerSource`, what `syncd.client` reads ``aws-sm://`` sources with.

The names below are loaded on first use, so a consumer importing the reader does
not load the daemon's side (``syncd.stores.aws_secretsmanager:SecretsManagerStore``
is the entry point).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncd.stores._lazy import lazy_exports

if TYPE_CHECKING:
    from syncd.stores.aws_secretsmanager.errors import MAX_VERSIONS_PER_DAY, QUOTA_EXPLANATION
    from syncd.stores.aws_secretsmanager.layout import BATCH_IDS, MAX_SLOTS, slot_names
    from syncd.stores.aws_secretsmanager.plan import PRICE_PER_10K_CALLS, PRICE_PER_SECRET_MONTH, slots_for
    from syncd.stores.aws_secretsmanager.read import SecretsManagerSource
    from syncd.stores.aws_secretsmanager.store import MAX_SECRET_STRING, SecretsManagerStore

#: Each submodule and the names it exports here.
__getattr__ = lazy_exports(
    __name__,
    {
        "errors": ("MAX_VERSIONS_PER_DAY", "QUOTA_EXPLANATION"),
        "layout": ("BATCH_IDS", "MAX_SLOTS", "slot_names"),
        "plan": ("PRICE_PER_10K_CALLS", "PRICE_PER_SECRET_MONTH", "slots_for"),
        "read": ("SecretsManagerSource",),
        "store": ("MAX_SECRET_STRING", "SecretsManagerStore"),
    },
)

__all__ = [
    "BATCH_IDS",
    "MAX_SECRET_STRING",
    "MAX_SLOTS",
    "MAX_VERSIONS_PER_DAY",
    "PRICE_PER_10K_CALLS",
    "PRICE_PER_SECRET_MONTH",
    "QUOTA_EXPLANATION",
    "SecretsManagerSource",
    "SecretsManagerStore",
    "slot_names",
    "slots_for",
]
