"""The second line behind the jobs: which credential has fallen off the schedule, checked a slice at a time.

A credential's run arms its next one as its last step (`syncd.schedule.jobs`), so none
should ever be lost; the engine's heartbeat still checks every credential each
`WATCHDOG_PASS_BEATS` beats (`Rounds`) and re-arms any that `is_lost` calls lost.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection
from datetime import timedelta
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["FIRED_GRACE", "PARKED", "WATCHDOG_GRACE", "WATCHDOG_PASS_BEATS", "Lost", "Plan", "Rounds", "is_lost"]

#: How far past its planned time a run must be before the watchdog calls it lost. A busy
#: loop makes runs late by milliseconds, rarely by a second; a lost run is late forever.
WATCHDOG_GRACE = 5.0

#: Heartbeats (one a second) in which the watchdog checks every credential once, a slice per beat
#: (`Rounds`). One whole pass per beat was 15% of a core at 100,000 credentials, and a loop
#: stall of about 100 ms every second; a lost credential is now found within the grace plus this.
WATCHDOG_PASS_BEATS = 5

#: How long a run whose job has fired may wait for the loop to start it before the watchdog
#: calls it lost. A started run always arms its next one (or another run of it does), so this
#: only catches a run the loop never started; a loop that far behind shows in the lateness.
FIRED_GRACE = 60.0


#: (name, planned next run, running) of a credential, as the watchdog sees it.
Plan = tuple[str, float | None, bool]
#: (name, planned next run, fire time of its job or None) of a credential off the schedule.
Lost = tuple[str, float, float | None]

#: Where a credential's job waits once it has fired and its run has not armed the next one yet:
#: far enough that it never fires, so a run that never re-arms is found by the watchdog.
PARKED = timedelta(days=365)


def is_lost(
    planned: float | None,
    now: float,
    *,
    running: bool,
    armed_at: float | None,
    grace: float,
    fired_grace: float = FIRED_GRACE,
) -> bool:
    """Whether a credential has fallen off the schedule and must be re-armed.

    ``planned`` is the engine's planned next run, ``armed_at`` the fire time of the job
    the scheduler holds for it (None: no job). A credential that runs, or has no plan
    yet, is never lost; one whose job still waits to fire at (about) the planned time is
    only late (the scheduler will fire it); one overdue by more than ``grace`` with no
    job, or a job for a much later time, is lost.

    A job parked by its firing (``armed_at`` is its fire time plus `PARKED`) has handed
    its run to the loop, which starts it on a later turn: that run is waiting, not lost,
    until ``fired_grace`` has passed since the firing. Re-arming it would fire a second
    run behind the first, one more job move and one more task each, on a loop that is
    already too busy to start the first (seen at 100,000 credentials: tens of thousands
    of re-arms in minutes).
    """
    if running or planned is None or now - planned <= grace:
        return False
    if armed_at is None:
        return True
    if armed_at - planned > PARKED.total_seconds() / 2:
        fired_at = armed_at - PARKED.total_seconds()
        return now - fired_at > fired_grace
    return armed_at - planned > grace


class Rounds(Generic[T]):
    """A pass over a live collection, a slice per call: every item once per ``per_pass`` calls.

    Nothing is copied: a slice is read from the collection at the pass's position (a copy of
    100,000 credentials per pass allocated enough to set off full garbage collections, 11% of a
    core). An item added or removed mid-pass shifts the rest by one, so one item may be checked
    twice or wait for the next pass.
    """

    def __init__(self, per_pass: int) -> None:
        self._per_pass = max(1, per_pass)
        self._at = 0

    def next_slice(self, items: Collection[T]) -> list[T]:
        count = len(items)
        if self._at >= count:
            self._at = 0
        size = max(1, -(-count // self._per_pass))
        part = list(itertools.islice(items, self._at, self._at + size))
        self._at += size
        return part
