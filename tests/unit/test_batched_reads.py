"""How many targets are read together (`syncd.engine.reads.read_targets`, `syncd.stores.batch`): start-up adoption and the read-back sweep.

The stores here are in-process recorders, not stores: what is under test is the batching
and the bound on reads in flight, which a real store cannot show (each integration test in
test_startup_batch_reads.py checks that a real store's batch says what its ``read`` says).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from syncd.engine import reads
from syncd.stores import batch


class _Recorder:
    """Counts reads in flight (a batch of a serial store is one read at a time) and the batches."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.batches: list[list[str]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def _reading(self, count: int) -> None:
        self.in_flight += count
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.001)
        self.in_flight -= count

    async def read(self, key: str, *, target: Any = None) -> str:
        self.batches.append([key])
        await self._reading(1)
        return f"{self.name}:{key}"


class _Together(_Recorder):
    """A store whose ``read_many`` has every item of a batch in flight at once (BatchGetSecretValue)."""

    async def read_many(self, items: Sequence[tuple[str, Any]]) -> list[Any]:
        self.batches.append([key for key, _ in items])
        await self._reading(len(items))
        return [f"{self.name}:{key}" for key, _ in items]


class _Serial(_Recorder):
    """A store whose ``read_many`` reads its items in turn (the file store in one thread)."""

    reads_serially = True

    async def read_many(self, items: Sequence[tuple[str, Any]]) -> list[Any]:
        self.batches.append([key for key, _ in items])
        for _ in items:
            await self._reading(1)
        return [f"{self.name}:{key}" for key, _ in items]


def _targets(store: _Recorder, n: int) -> list[Any]:
    return [SimpleNamespace(store=store, cfg=SimpleNamespace(key=f"k{i:04d}")) for i in range(n)]


@pytest.mark.parametrize(
    ("store_type", "n", "limit", "sizes"),
    [
        (_Recorder, 7, 3, [1] * 7),  # no read_many: one read per item
        (_Together, 45, 64, [20, 20, 5]),  # BatchGetSecretValue's 20
        (_Together, 10, 4, [4, 4, 2]),  # never more items in flight than allowed
        (_Serial, 1200, 64, [batch.SERIAL_BATCH, batch.SERIAL_BATCH, 1200 - 2 * batch.SERIAL_BATCH]),
        (_Serial, 30, 1, [30]),  # one read at a time is what a serial batch is
    ],
)
async def test_batches_keep_order_and_the_bound(store_type: type[_Recorder], n: int, limit: int, sizes: list[int]):
    store = store_type("s")
    results = await reads.read_targets(_targets(store, n), limit)
    assert results == [f"s:k{i:04d}" for i in range(n)]
    assert sorted(map(len, store.batches), reverse=True) == sorted(sizes, reverse=True)
    assert store.most_in_flight <= limit


async def test_serial_batches_run_one_at_a_time_beside_other_stores():
    """Two serial stores and a batching one: the serial batches never overlap (they hold every
    permit), and every target is read once, in its own store."""
    first, second, together = _Serial("a"), _Serial("b"), _Together("c")
    targets = _targets(first, 700) + _targets(second, 600) + _targets(together, 50)
    overlaps = 0
    real = _Serial._reading

    async def watched(self: _Serial, count: int) -> None:
        nonlocal overlaps
        other = second if self is first else first
        overlaps += other.in_flight > 0
        await real(self, count)

    _Serial._reading = watched  # type: ignore[method-assign]
    try:
        results = await reads.read_targets(targets, 64)
    finally:
        _Serial._reading = real  # type: ignore[method-assign]
    assert results[:700] == [f"a:k{i:04d}" for i in range(700)]
    assert results[700:1300] == [f"b:k{i:04d}" for i in range(600)]
    assert results[1300:] == [f"c:k{i:04d}" for i in range(50)]
    assert overlaps == 0
    assert together.most_in_flight <= 64 and max(map(len, together.batches)) == batch.BATCH


@pytest.mark.parametrize(("size", "limit", "held"), [(1, 64, 1), (20, 64, 20), (500, 64, 64), (500, 1, 1), (0, 5, 1)])
def test_permits(size: int, limit: int, held: int):
    assert batch.permits(size, limit) == held


class _FailsWhole(_Together):
    """A batch read that raises as a whole for the batch holding ``k0020`` (a bug, an SDK surprise)."""

    async def read_many(self, items: Sequence[tuple[str, Any]]) -> list[Any]:
        if any(key == "k0020" for key, _ in items):
            raise RuntimeError("the whole batch failed")
        return await super().read_many(items)


async def test_a_batch_that_fails_whole_fails_its_items_only():
    results = await reads.read_targets(_targets(_FailsWhole("s"), 45), 64)
    failed = [i for i, r in enumerate(results) if isinstance(r, Exception)]
    assert failed == list(range(20, 40))
    assert all(str(results[i]) == "the whole batch failed" for i in failed)
    assert results[:20] == [f"s:k{i:04d}" for i in range(20)] and results[40:] == [f"s:k{i:04d}" for i in range(40, 45)]
