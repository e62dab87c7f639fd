"""Reading many targets of one store at once: what start-up adoption needs at 10,000 credentials.

Optional store method (docs/design.md "Store interface")::

    async def read_many(self, items: Sequence[tuple[str, TargetConfig | None]]) -> list[TokenPayload | None | Exception]

one result per item, in order: what ``read(key, target=target)`` would have returned, or the
exception it would have raised (an item's failure never fails the others). A store offers it
when reading together is cheaper than one ``read`` each: one thread hop for many files, one
BatchGetSecretValue for 20 secrets. A store without it is read with one ``read`` per item,
all of them in flight together (the caller bounds how many items it passes at once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from syncd.payload import TokenPayload

if TYPE_CHECKING:
    from syncd.config import TargetConfig
    from syncd.stores.base import Store

__all__ = ["ReadItem", "ReadResult", "read_many"]

ReadItem = tuple[str, "TargetConfig | None"]
ReadResult = TokenPayload | None | Exception


async def read_many(store: Store, items: Sequence[ReadItem]) -> list[ReadResult]:
    """Every item's read result (the store's own ``read_many`` when it has one)."""
    own = getattr(store, "read_many", None)
    if own is not None:
        results: list[ReadResult] = await own(items)
        if len(results) != len(items):
            raise RuntimeError(f"store {store.name!r}: read_many returned {len(results)} results for {len(items)}")
        return results
    return list(await asyncio.gather(*(_read_one(store, key, target) for key, target in items)))


async def _read_one(store: Store, key: str, target: TargetConfig | None) -> ReadResult:
    try:
        return await store.read(key, target=target)
    except Exception as exc:  # one item's failure is that item's result
        return exc
