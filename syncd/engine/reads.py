"""Reading many targets at once: batches by store, a bound on the reads in flight.

Start-up adoption (`syncd.engine.adopt`) and the read-back sweep (`syncd.engine.readback`)
both read many targets together. A store with ``read_many`` gets batches
(`syncd.stores.batch.batch_size`: one thread hop for 500 files, BatchGetSecretValue for 20
secrets); any other one is read target by target, as many in flight as allowed (a batch
would only make each read wait for its slowest).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence

from syncd.engine.state import TargetState
from syncd.stores import batch as batching
from syncd.stores.batch import ReadResult, read_many

__all__ = ["read_targets"]


async def read_targets(targets: Sequence[TargetState], concurrency: int) -> list[ReadResult]:
    """Each target's read result, in order, ``concurrency`` reads in flight at most.

    A batch holds one permit per item, or all of them when it is larger (`batching.permits`);
    a batch that fails as a whole is each of its items' failure, and no one else's.
    """
    by_store: dict[int, list[int]] = defaultdict(list)
    for i, ts in enumerate(targets):
        by_store[id(ts.store)].append(i)
    limit = max(1, concurrency)
    batches: list[list[int]] = []
    for idx in by_store.values():
        size = batching.batch_size(targets[idx[0]].store, limit)
        batches += [idx[k : k + size] for k in range(0, len(idx), size)]
    results: list[ReadResult] = [None] * len(targets)
    in_flight = asyncio.Semaphore(limit)
    gate = asyncio.Lock()  # one batch gathers its permits at a time, or two could each hold half

    async def run(batch: list[int]) -> None:
        store = targets[batch[0]].store
        held = batching.permits(len(batch), limit)
        async with gate:
            for _ in range(held):
                await in_flight.acquire()
        try:
            got: list[ReadResult] = await read_many(store, [(targets[i].cfg.key, targets[i].cfg) for i in batch])
        except Exception as exc:  # a batch that fails as a whole is each of its items' failure, no one else's
            got = [exc] * len(batch)
        finally:
            for _ in range(held):
                in_flight.release()
        for i, result in zip(batch, got, strict=True):
            results[i] = result

    await asyncio.gather(*(run(b) for b in batches))
    return results
