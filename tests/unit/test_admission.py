"""`MintSlots`: the mint slots of one token endpoint, given out most urgent first."""

from __future__ import annotations

import asyncio
import math

import pytest

from syncd.engine.admission import MintSlots


async def _holders(slots: MintSlots, urgencies: list[float], admitted: list[float]) -> list[asyncio.Task[None]]:
    """One task per urgency, queued in this order; each records its urgency when admitted and keeps the slot."""

    async def wait(u: float) -> None:
        await slots.acquire(u)
        admitted.append(u)

    tasks = [asyncio.create_task(wait(u)) for u in urgencies]
    await asyncio.sleep(0)  # every task has queued
    return tasks


async def test_waiters_are_admitted_lowest_urgency_first_and_in_arrival_order_among_equals():
    slots = MintSlots(1)
    await slots.acquire(0.0)  # the one slot is held
    admitted: list[float] = []
    tasks = await _holders(slots, [50.0, 10.0, -math.inf, 10.0, 30.0], admitted)
    assert slots.waiting == 5 and admitted == []
    for _ in range(5):
        slots.release()
        await asyncio.sleep(0)
    assert admitted == [-math.inf, 10.0, 10.0, 30.0, 50.0]
    await asyncio.gather(*tasks)
    assert slots.in_flight == 1 and slots.waiting == 0


async def test_in_flight_never_exceeds_the_limit_and_a_newcomer_cannot_take_a_handed_slot():
    slots = MintSlots(2)
    await slots.acquire(5.0)
    await slots.acquire(5.0)
    admitted: list[float] = []
    tasks = await _holders(slots, [1.0], admitted)
    slots.release()  # handed to the waiter at once, before it has run
    assert slots.in_flight == 2
    late = asyncio.create_task(slots.acquire(-math.inf))  # more urgent, but the slot is gone
    await asyncio.sleep(0)
    assert admitted == [1.0] and not late.done() and slots.waiting == 1
    slots.release()
    await late
    await asyncio.gather(*tasks)
    assert slots.in_flight == 2


async def test_a_waiter_that_times_out_leaves_no_slot_and_no_waiter_behind():
    slots = MintSlots(1)
    await slots.acquire(0.0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await slots.acquire(1.0)
    assert slots.waiting == 0 and slots.in_flight == 1
    slots.release()
    assert slots.in_flight == 0
    await slots.acquire(2.0)  # free again, at once
    assert slots.in_flight == 1


async def test_a_slot_handed_to_a_waiter_cancelled_before_it_ran_goes_to_the_next():
    slots = MintSlots(1)
    await slots.acquire(0.0)
    admitted: list[float] = []
    first, second = await _holders(slots, [1.0, 2.0], admitted)
    slots.release()  # handed to the first waiter ...
    first.cancel()  # ... which is cancelled before it resumes
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert first.cancelled() and admitted == [2.0]
    assert slots.in_flight == 1 and slots.waiting == 0
    await second


async def test_many_waiters_giving_up_while_every_slot_is_held_do_not_pile_up():
    """A hung IdP holds every slot while queued mints time out one after another: their entries go."""
    slots = MintSlots(1)
    await slots.acquire(0.0)
    for i in range(1000):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0):
                await slots.acquire(float(i))
    assert slots.waiting == 0
    assert len(slots._queue) <= 64 + 1


async def test_a_raised_limit_admits_waiters_at_once_and_a_lowered_one_lets_holders_finish():
    slots = MintSlots(1)
    await slots.acquire(0.0)
    admitted: list[float] = []
    tasks = await _holders(slots, [1.0, 2.0, 3.0], admitted)
    slots.set_limit(3)
    await asyncio.sleep(0)
    assert admitted == [1.0, 2.0] and slots.in_flight == 3
    slots.set_limit(1)
    slots.release()
    slots.release()
    await asyncio.sleep(0)
    assert admitted == [1.0, 2.0] and slots.in_flight == 1, "two holders left, still at the new limit"
    slots.release()
    await asyncio.sleep(0)
    assert admitted == [1.0, 2.0, 3.0]
    await asyncio.gather(*tasks)


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_below_one_is_refused(limit):
    with pytest.raises(ValueError, match="at least 1"):
        MintSlots(limit)


async def test_release_without_a_slot_is_an_error():
    with pytest.raises(RuntimeError, match="without a slot"):
        MintSlots(1).release()


async def test_the_waiting_count_is_reported_each_time_it_changes():
    seen: list[int] = []
    slots = MintSlots(1, on_waiting=seen.append)
    await slots.acquire(0.0)
    admitted: list[float] = []
    tasks = await _holders(slots, [1.0, 2.0], admitted)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await slots.acquire(3.0)
    slots.release()
    slots.release()
    await asyncio.gather(*tasks)
    assert seen == [1, 2, 3, 2, 1, 0]
    assert slots.waiting == 0
