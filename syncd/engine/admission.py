"""Mint slots for one token endpoint, given out by urgency: the token that runs out first mints first.

``max_concurrent_mints`` bounds the mints in flight to one origin. When more mints are due
than that (an IdP slower than the rotations due, a backlog after a long start-up or an
outage), the waiting ones are admitted in order of urgency (`decide.mint_urgency`): a
credential with no valid token first, then the one whose token reaches its refresh deadline
soonest; equal urgency in arrival order. With a first-come semaphore, a credential a minute
from its deadline waited behind hundreds with most of their lifetime left, and with the
slot wait counted in ``mint_timeout`` it could fail there while they minted.

A freed slot is handed straight to the next waiter (no newcomer can take it first), and a
waiter that gives up (its deadline, a drain) never holds one: a slot handed to it as it gave
up is passed on.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

__all__ = ["MintSlots"]


class MintSlots:
    """At most ``limit`` holders; waiters admitted lowest ``urgency`` first (FIFO among equals).

    Not thread-safe: one event loop's tasks use it, as with `asyncio.Semaphore`.
    """

    def __init__(self, limit: int, on_waiting: Callable[[int], None] = lambda n: None) -> None:
        if limit < 1:
            raise ValueError(f"a mint slot limit is at least 1, got {limit}")
        self._on_waiting = on_waiting  # told the number of waiters whenever it changes (a gauge)
        self._limit = limit
        self.in_flight = 0
        self._queue: list[tuple[float, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        self._waiting = 0  # live waiters; the queue may also hold entries of ones that gave up

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def waiting(self) -> int:
        """Mints waiting for a slot now."""
        return self._waiting

    def set_limit(self, limit: int) -> None:
        """A new bound (a reload): a higher one admits waiters at once; a lower one lets holders finish."""
        if limit < 1:
            raise ValueError(f"a mint slot limit is at least 1, got {limit}")
        self._limit = limit
        self._admit()

    async def acquire(self, urgency: float) -> None:
        """Wait for a slot (cancel the caller to give up: ``asyncio.timeout`` bounds the wait)."""
        if self.in_flight < self._limit and not self._waiting:
            self.in_flight += 1
            return
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._queue, (urgency, next(self._arrivals), slot))
        self._waiting += 1
        self._on_waiting(self._waiting)
        try:
            await slot
        except BaseException:
            if slot.done() and not slot.cancelled():
                self.release()  # handed over as the caller gave up: the next waiter gets it
            else:
                self._waiting -= 1
                self._on_waiting(self._waiting)
                slot.cancel()  # its queue entry is skipped when reached ...
                if len(self._queue) > 2 * self._waiting + 64:  # ... or dropped here, while a hung IdP holds every slot
                    self._queue = [entry for entry in self._queue if not entry[2].done()]
                    heapq.heapify(self._queue)
            raise

    def release(self) -> None:
        """Give a slot back: the most urgent waiter, if any, has it now."""
        if self.in_flight < 1:
            raise RuntimeError("MintSlots.release() without a slot held")
        self.in_flight -= 1
        self._admit()

    def _admit(self) -> None:
        while self._queue and self.in_flight < self._limit:
            _, _, slot = heapq.heappop(self._queue)
            if slot.done():  # its waiter gave up
                continue
            self.in_flight += 1
            self._waiting -= 1
            self._on_waiting(self._waiting)
            slot.set_result(None)
