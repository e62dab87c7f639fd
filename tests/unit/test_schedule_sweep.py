"""`syncd.schedule.Sweep`: many planned times behind one APScheduler job (the read-backs)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC

import pytest

from syncd.schedule import PARKED, LoopScheduler, Sweep


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _never(names: list[str]) -> None:
    raise AssertionError(f"nothing is due here ({names})")


@contextlib.asynccontextmanager
async def _running(run: Callable[[list[str]], Awaitable[None]], gap: float) -> AsyncIterator[Sweep]:
    """A sweep on a started scheduler, shut down when the block ends."""
    scheduler = LoopScheduler(timezone=UTC)
    scheduler.start()
    try:
        yield Sweep(scheduler, run, job_id="t", clock=time.time, gap=gap)
    finally:
        scheduler.shutdown(wait=False)


def _paused() -> LoopScheduler:
    scheduler = LoopScheduler(timezone=UTC)
    scheduler.start(paused=True)
    return scheduler


async def test_due_takes_the_names_due_earliest_first_with_their_latest_times():
    """Arming again replaces a name's time, cancelling drops it: the heap's old entries are skipped."""
    scheduler = _paused()
    try:
        sweep = Sweep(scheduler, _never, job_id="t", clock=_Clock(0.0))
        for name, at in [("c", 3.0), ("a", 1.0), ("b", 2.0), ("moved", 1.5), ("gone", 1.2)]:
            sweep.arm(name, at)
        sweep.arm("moved", 10.0)
        sweep.cancel("gone")
        assert len(sweep) == 4 and sweep.planned("moved") == 10.0 and sweep.planned("gone") is None
        assert sweep.due(0.5) == []
        assert sweep.due(2.5) == ["a", "b"]
        assert sweep.due(2.5) == []  # taken names are no longer planned
        assert sweep.due(100.0) == ["c", "moved"]
        assert len(sweep) == 0
    finally:
        scheduler.shutdown(wait=False)


async def test_due_takes_at_most_the_limit():
    scheduler = _paused()
    try:
        sweep = Sweep(scheduler, _never, job_id="t", clock=_Clock(0.0), limit=3)
        for i in range(7):
            sweep.arm(f"n{i}", float(i))
        assert sweep.due(100.0) == ["n0", "n1", "n2"]
        assert sweep.due(100.0) == ["n3", "n4", "n5"]
        assert sweep.due(100.0) == ["n6"]
    finally:
        scheduler.shutdown(wait=False)


async def test_rearming_the_same_names_does_not_grow_the_heap_for_ever():
    """A credential re-planned at every rotation before its read-back came up leaves an old entry each time."""
    scheduler = _paused()
    try:
        sweep = Sweep(scheduler, _never, job_id="t", clock=_Clock(0.0))
        for round_ in range(50):
            for i in range(100):
                sweep.arm(f"n{i}", 1000.0 + round_ + i / 1000)
        assert len(sweep) == 100
        assert len(sweep._heap) <= 2 * 100 + 1024
        assert sweep.due(10_000.0) == [f"n{i}" for i in range(100)]
    finally:
        scheduler.shutdown(wait=False)


async def test_the_job_fires_at_the_earliest_time_no_sooner_than_the_gap():
    """Only an earlier time moves the job; a fire is never sooner than ``gap`` after the last one."""
    clock = _Clock(1000.0)
    scheduler = _paused()
    try:
        sweep = Sweep(scheduler, _never, job_id="t", clock=clock, gap=0.25)
        job = scheduler.get_job("t")
        assert sweep.fires_at() is None and job.next_run_time.timestamp() > time.time() + PARKED.total_seconds() / 2
        sweep.arm("late", 1010.0)
        assert sweep.fires_at() == 1010.0
        sweep.arm("early", 1005.0)
        assert sweep.fires_at() == 1005.0
        sweep.arm("later", 1020.0)
        assert sweep.fires_at() == 1005.0
        assert scheduler.get_job("t").next_run_time.timestamp() == pytest.approx(1005.0)
    finally:
        scheduler.shutdown(wait=False)


async def test_names_due_within_a_gap_of_the_last_fire_are_handed_over_together():
    """On a running scheduler: after a fire, what falls due within ``gap`` waits for one call at the
    gap's end (at 67 read-backs a second and 0.25 s, ~17 a call); a name due later gets its own."""
    calls: list[tuple[float, list[str]]] = []
    done = asyncio.Event()

    async def run(names: list[str]) -> None:
        calls.append((time.time(), names))
        if sum(len(n) for _, n in calls) == 4:
            done.set()

    async with _running(run, gap=0.2) as sweep:
        now = time.time()
        sweep.arm("first", now)
        sweep.arm("b", now + 0.01)
        sweep.arm("c", now + 0.02)
        sweep.arm("alone", now + 0.8)
        await asyncio.wait_for(done.wait(), 5)
    assert [names for _, names in calls] == [["first"], ["b", "c"], ["alone"]]
    assert calls[1][0] >= calls[0][0] + 0.2 - 0.01  # APScheduler's clock rounds to the microsecond
    assert calls[2][0] >= now + 0.8 - 0.01


async def test_a_run_that_fails_still_moves_the_job_to_what_is_left():
    """The run's exception is APScheduler's to log; the names still planned are not lost with it."""
    calls: list[list[str]] = []
    second = asyncio.Event()

    async def run(names: list[str]) -> None:
        calls.append(names)
        if len(calls) == 1:
            raise RuntimeError("the first sweep fails")
        second.set()

    async with _running(run, gap=0.05) as sweep:
        now = time.time()
        sweep.arm("first", now)
        sweep.arm("second", now + 0.3)
        await asyncio.wait_for(second.wait(), 5)
    assert calls == [["first"], ["second"]]


async def test_a_name_armed_while_a_sweep_runs_is_taken_by_the_next_one():
    """Arming inside the run (the engine plans the next read-back as it reads) must not be lost."""
    calls: list[list[str]] = []
    done = asyncio.Event()
    holder: list[Sweep] = []

    async def run(names: list[str]) -> None:
        calls.append(names)
        if names == ["first"]:
            holder[0].arm("again", time.time())  # already due: taken one gap later
            await asyncio.sleep(0.01)
        else:
            done.set()

    async with _running(run, gap=0.05) as sweep:
        holder.append(sweep)
        sweep.arm("first", time.time())
        await asyncio.wait_for(done.wait(), 5)
    assert calls == [["first"], ["again"]]
