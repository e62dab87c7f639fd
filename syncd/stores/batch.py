"""Reading many targets of one store at once: what start-up adoption needs at 10,000 credentials.

Optional store method (docs/design.md "Store interface")::

    async def read_many(self, items: Sequence[tuple[str, TargetConfig | None]]) -> list[TokenPayload | None | Exception]

one result per item, in order: what ``read(key, target=target)`` would have returned, or the
exception it would have raised (an item's failure never fails the others). A store offers it
when reading together is cheaper than one ``read`` each: one thread hop for many files, one
BatchGetSecretValue for 20 secrets. A store without it is read with one ``read`` per item,
all of them in flight together (the caller bounds how many items it passes at once).

A store whose ``read_many`` reads its items one after another sets ``reads_serially = True``
(the file store: one thread hop reads the files in turn). It gets batches of ``SERIAL_BATCH``,
one at a time (`batch_size`, `permits`): threads reading local files in parallel gain
nothing but contention for the GIL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from syncd.payload import TokenPayload

if TYPE_CHECKING:
    from syncd.config import TargetConfig
    from syncd.stores.base import Store

__all__ = ["BATCH", "SERIAL_BATCH", "ReadItem", "ReadResult", "batch_size", "permits", "read_many"]

ReadItem = tuple[str, "TargetConfig | None"]
ReadResult = TokenPayload | None | Exception

#: Items per ``read_many`` call of a store that reads them together (BatchGetSecretValue takes 20).
BATCH = 20

#: Items per ``read_many`` call of a store that reads them in turn (``reads_serially``). Measured on
#: 10,000 files (2 cores): batches of 20 with 64 reads allowed, so three threads at once, took 1.6 s;
#: one thread at a time, 500 files per hop, 0.55-0.65 s. A hop of 500 small files is ~40 ms in a
#: worker thread, while the event loop runs.
SERIAL_BATCH = 500


def batch_size(store: Store, limit: int) -> int:
    """Items per call for ``store`` when ``limit`` reads may be in flight (1: one ``read`` each)."""
    if getattr(store, "reads_serially", False):
        return SERIAL_BATCH
    if getattr(store, "read_many", None) is not None:
        return max(1, min(BATCH, limit))
    return 1


def permits(size: int, limit: int) -> int:
    """How many of the ``limit`` in-flight permits a batch of ``size`` holds: one per item, or all
    of them for a larger batch (a serial one), which then runs alone."""
    return max(1, min(size, limit))


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
