"""syncd.heap: the collector paused during start-up, survivors frozen after, and the hourly reclaim."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from syncd import heap
from syncd.heap import collector_paused


def test_collector_paused_restores_the_collector_even_on_error():
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():  # nested: the outer block turns it back on
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_collector_paused_leaves_a_disabled_collector_disabled():
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.fixture
def thawed():
    """Each test starts and ends with nothing frozen and no freezing callback installed.

    Automatic collections are held off meanwhile (explicit ``gc.collect`` still runs, callbacks
    included): one landing between two lines of a test would freeze what it is about to check."""
    heap.thaw()
    with collector_paused():
        yield
    heap.thaw()


class _Node:
    """A tracked object that can sit in a reference cycle and be watched with a weak reference."""

    def __init__(self) -> None:
        self.other: _Node | None = None


def _in_collected_generations(obj: object) -> bool:
    # gc.get_objects() lists generations 0 to 2, never the frozen (permanent) generation.
    return any(o is obj for o in gc.get_objects())


def test_a_full_collection_after_freeze_long_lived_freezes_its_survivors(thawed):
    heap.freeze_long_lived(collect_first=False)
    survivor = _Node()
    assert _in_collected_generations(survivor)
    gc.collect(1)  # a younger collection leaves it to the collector
    assert _in_collected_generations(survivor)
    gc.collect()  # a full one freezes what survived it
    assert not _in_collected_generations(survivor)
    assert gc.get_freeze_count() > 0


def test_thaw_stops_freezing_and_unfreezes(thawed):
    heap.freeze_long_lived(collect_first=False)
    frozen = _Node()
    gc.collect()
    assert not _in_collected_generations(frozen)
    heap.thaw()
    assert gc.get_freeze_count() == 0 and _in_collected_generations(frozen)
    later = _Node()
    gc.collect()
    assert _in_collected_generations(later), "no callback left behind to freeze it"
    heap.thaw()  # twice is harmless


def test_freeze_long_lived_installs_its_callback_once(thawed):
    heap.freeze_long_lived(collect_first=False)
    heap.freeze_long_lived(collect_first=True)
    assert sum(1 for cb in gc.callbacks if getattr(cb, "__module__", None) == "syncd.heap") == 1


def test_a_dead_cycle_among_frozen_objects_waits_for_reclaim(thawed):
    heap.freeze_long_lived(collect_first=False)
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    gc.collect()  # survives (still referenced) and is frozen
    watch = weakref.ref(a)
    del a, b
    gc.collect()
    assert watch() is not None, "a full collection does not walk frozen objects"
    ticks = iter([10.0, 10.25])
    done = heap.reclaim(clock=lambda: next(ticks))
    assert watch() is None
    assert done.collected >= 2 and done.seconds == pytest.approx(0.25)
    assert gc.get_freeze_count() > 0, "what survived the walk is frozen again"


async def test_reclaim_periodically_reports_each_walk_until_cancelled(thawed):
    reports: list[heap.Reclaimed] = []
    task = asyncio.create_task(heap.reclaim_periodically(reports.append, interval=0.01))
    while len(reports) < 2:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(r.collected >= 0 and r.seconds >= 0 for r in reports)
