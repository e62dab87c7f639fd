"""Many planned times behind one job, for work that is cheaper done together: the read-backs.

A read-back between rotations is one store read. With a job per credential, each read
cost a job firing, a move of that job, and for the file store and hvac a thread hop of
its own: about as much CPU as the read. A `Sweep` keeps every name's next time in a heap
and one APScheduler job that fires at the earliest of them, at most once per ``gap``
seconds; what is due then is handed to ``run`` in one list, which reads it in batches
(`syncd.stores.batch`). At 67 rotations a second and a gap of 0.25 s, a fire reads about
17 targets, in one thread hop for the file store.

Arming a name again replaces its time: the heap keeps the old entry, which is dropped
when it comes up (its time is no longer the name's), and the heap is rebuilt when such
entries outnumber the live ones.
"""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.base import BaseScheduler

from syncd.schedule.jobs import UNBOUNDED_INSTANCES, ParkAfterFiring
from syncd.schedule.watchdog import PARKED

__all__ = ["SWEEP_GAP", "SWEEP_LIMIT", "Sweep"]

#: The shortest time between two fires: reads due within it wait for one another (at most
#: this late, against a read-back planned half a refresh interval after its write).
SWEEP_GAP = 0.25

#: The most names one fire takes: more due (a numeric ``verify_interval`` over a large fleet)
#: are taken by the next fire, one gap later, so the loop turns in between.
SWEEP_LIMIT = 4096

SweepRun = Callable[[list[str]], Awaitable[None]]


class Sweep:
    """Names with a planned time each; one job hands ``run`` the names that are due, together."""

    def __init__(
        self,
        scheduler: BaseScheduler,
        run: SweepRun,
        *,
        job_id: str,
        clock: Callable[[], float],
        gap: float = SWEEP_GAP,
        limit: int = SWEEP_LIMIT,
    ) -> None:
        self._scheduler = scheduler
        self._run = run
        self._job_id = job_id
        self._clock = clock
        self._gap = gap
        self._limit = max(1, limit)
        self._heap: list[tuple[float, str]] = []
        self._planned: dict[str, float] = {}
        self._fires_at: float | None = None  # when the job fires next; None while parked or running
        self._last_fire = float("-inf")
        self._running = False
        scheduler.add_job(
            self._fire,
            ParkAfterFiring(),
            id=job_id,
            next_run_time=datetime.now(UTC) + PARKED,
            misfire_grace_time=None,
            coalesce=True,
            # Unbounded, as the credentials' jobs (`syncd.schedule`): with one instance, a fire that moves
            # the job to a time already due would be refused (its task still counts) and parked for good.
            max_instances=UNBOUNDED_INSTANCES,
        )

    def __len__(self) -> int:
        return len(self._planned)

    def planned(self, name: str) -> float | None:
        """The name's planned time, or None."""
        return self._planned.get(name)

    def fires_at(self) -> float | None:
        """When the job fires next (None: nothing planned, or a fire in progress)."""
        return self._fires_at

    def arm(self, name: str, when: float) -> None:
        """Make ``when`` the name's one planned time."""
        self._planned[name] = when
        heapq.heappush(self._heap, (when, name))
        if len(self._heap) > 2 * len(self._planned) + 1024:
            self._heap = [(at, n) for n, at in self._planned.items()]
            heapq.heapify(self._heap)
        if not self._running and (self._fires_at is None or when < self._fires_at):
            self._move_job(when)

    def cancel(self, name: str) -> None:
        self._planned.pop(name, None)

    def due(self, now: float) -> list[str]:
        """Take the names due at ``now`` (at most the limit), earliest first: they are no longer planned."""
        heap, planned = self._heap, self._planned
        taken: list[str] = []
        while heap and heap[0][0] <= now and len(taken) < self._limit:
            at, name = heapq.heappop(heap)
            if planned.get(name) == at:
                del planned[name]
                taken.append(name)
        return taken

    async def _fire(self) -> None:
        if self._running:
            return  # the fire in progress moves the job when it ends
        self._running, self._fires_at = True, None
        now = self._last_fire = self._clock()
        try:
            names = self.due(now)
            if names:
                await self._run(names)
        finally:
            self._running = False
            self._rearm()

    def _rearm(self) -> None:
        heap, planned = self._heap, self._planned
        while heap and planned.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # replaced or cancelled since it was pushed
        if heap:
            self._move_job(heap[0][0])

    def _move_job(self, when: float) -> None:
        when = max(when, self._last_fire + self._gap)
        self._fires_at = when
        with contextlib.suppress(JobLookupError):  # the scheduler shut down (the engine stopped)
            self._scheduler.modify_job(self._job_id, next_run_time=datetime.fromtimestamp(when, UTC))
