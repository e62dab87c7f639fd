"""One APScheduler job per credential, owned so that no credential can fall off the schedule.

APScheduler counts a coroutine job as running until its task's done callback
has run, which is one loop turn *after* the coroutine returned. A run that arms
its own next run (a date job, replaced each time) therefore arms it while its
own instance still counts. With ``max_instances=1``, a next run that is already
due when the scheduler wakes up (a retry a few milliseconds away, a busy loop)
is refused ("skipped: maximum number of running instances reached"), and a date
job that was refused has no later fire time: APScheduler removes it and nothing
ever runs that credential again.

So here the instance limit is unbounded: APScheduler always hands the run over,
and the engine's own ``running`` flag decides (a run that finds its credential
still running returns, and the running one arms the next run when it ends). As
a second line, :func:`is_lost` lets a periodic watchdog find a credential whose
planned run is overdue while no job is armed for it and nothing runs it.

A reschedule is cheap, because one happens after every run: each credential keeps
one job for its whole life, whose trigger parks it far in the future once it has
fired, and arming it only moves its next run time (no new ``Job``, no
``inspect.signature`` check, no replace). :class:`LoopScheduler` wakes itself with
a plain ``call_soon`` when woken from the loop's own thread (APScheduler always
writes to the loop's self-pipe), and coalesces the wake-ups of one loop turn.

Adding a job is cheap too, because start-up adds two per credential (its run and its
read-back): 20,000 at 10,000 credentials. APScheduler validates each new ``Job`` alike
(``inspect.signature`` of the same function, the same trigger and options), about a
third of a millisecond each; only the first job of a :class:`CredentialJobs` goes
through ``add_job``, the others are copies of it with their own id, argument and time
(:func:`add_copy`). Start-up arms them in batches (:meth:`CredentialJobs.batched`,
:func:`add_copies`): one merge into the job store's sorted list under its lock and one
wake-up per batch, instead of a binary search, a list insert and a wake-up per job.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, tzinfo

from apscheduler.events import EVENT_JOB_ADDED, JobEvent
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_RUNNING, STATE_STOPPED
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.util import datetime_to_utc_timestamp

__all__ = [
    "FIRED_GRACE",
    "UNBOUNDED_INSTANCES",
    "WATCHDOG_GRACE",
    "CredentialJobs",
    "LoopScheduler",
    "Lost",
    "add_copies",
    "add_copy",
    "arm",
    "is_lost",
    "job_id",
]

#: APScheduler's per-job instance limit, set out of reach: the engine decides what runs.
UNBOUNDED_INSTANCES = sys.maxsize

#: How far past its planned time a run must be before the watchdog calls it lost. A busy
#: loop makes runs late by milliseconds, rarely by a second; a lost run is late forever.
WATCHDOG_GRACE = 5.0

Runner = Callable[[str, float | None], Awaitable[None]]
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


def job_id(name: str) -> str:
    return f"cred:{name}"


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


def arm(
    scheduler: AsyncIOScheduler, job: str, run: Callable[..., Awaitable[None]], args: list[object], when: float
) -> None:
    """Make ``when`` the one next run of the date job ``job`` (replacing it), with no instance limit.

    The limit is out of reach for the reason in the module docstring: a job that re-arms itself
    as its last step would otherwise lose a next run that is already due.
    """
    scheduler.add_job(
        run,
        DateTrigger(run_date=datetime.fromtimestamp(when, UTC)),
        args=args,
        id=job,
        replace_existing=True,
        misfire_grace_time=None,
        coalesce=True,
        max_instances=UNBOUNDED_INSTANCES,
    )


#: A Job's attributes (its ``__slots__``), copied by :func:`add_copy`.
_JOB_FIELDS = tuple(k for k in Job.__slots__ if k != "__weakref__")


def _copy(template: Job, job: str, args: list[object], run_at: datetime) -> Job:
    copy = Job.__new__(Job)
    for field in _JOB_FIELDS:
        setattr(copy, field, getattr(template, field))
    copy.id, copy.args, copy.kwargs, copy.next_run_time = job, tuple(args), {}, run_at
    return copy


def add_copy(scheduler: AsyncIOScheduler, template: Job, job: str, args: list[object], run_at: datetime) -> Job | None:
    """Add a job like ``template`` (a job the scheduler validated) with its own id, ``args`` and next run.

    What ``add_job`` does after building the ``Job``, without building it: the copy goes into
    the template's job store under the scheduler's lock, the job-added event is dispatched,
    and a running scheduler is woken. None (nothing added) when the scheduler has not started
    (``add_job`` would keep the job pending) or the template is in no job store.
    """
    store_alias = template._jobstore_alias
    if scheduler.state == STATE_STOPPED or store_alias is None:
        return None
    copy = _copy(template, job, args, run_at)
    with scheduler._jobstores_lock:
        scheduler._lookup_jobstore(store_alias).add_job(copy)  # ConflictingIdError, as add_job raises
    scheduler._dispatch_event(JobEvent(EVENT_JOB_ADDED, job, store_alias))
    if scheduler.state == STATE_RUNNING:
        scheduler.wakeup()
    return copy


#: A ``MemoryJobStore`` entry: the job and its next run as a UTC timestamp (None: paused).
_Entry = tuple[Job, float | None]


def _order(entry: _Entry) -> tuple[float, str]:
    """The order of ``MemoryJobStore._jobs`` (its ``_get_job_index``): next run (None last), then id."""
    job, timestamp = entry
    return (math.inf if timestamp is None else timestamp, job.id)


def _merged(existing: list[_Entry], new: list[_Entry]) -> list[_Entry]:
    """``existing`` (sorted by `_order`) with ``new`` merged in: a binary search per new entry, slices between."""
    new.sort(key=_order)
    out: list[_Entry] = []
    lo = 0
    for entry in new:
        at = bisect.bisect_left(existing, _order(entry), lo, key=_order)
        out += existing[lo:at]
        out.append(entry)
        lo = at
    out += existing[lo:]
    return out


def add_copies(
    scheduler: AsyncIOScheduler, template: Job, jobs: Sequence[tuple[str, list[object], datetime]]
) -> set[str] | None:
    """:func:`add_copy` for many jobs at once; the ids it added.

    The copies enter the template's job store in one merge into its sorted list, under the
    scheduler's lock; a job-added event is dispatched for each and a running scheduler is
    woken once. An id the store already holds is left out (its job is the caller's to move),
    as is any id after its first in ``jobs``. None (nothing added) where :func:`add_copy`
    adds nothing, and when the store is not APScheduler's ``MemoryJobStore``, whose list
    and index this merges into (``tests/unit/test_schedule.py`` pins them).
    """
    store_alias = template._jobstore_alias
    if scheduler.state == STATE_STOPPED or store_alias is None:
        return None
    added: set[str] = set()
    with scheduler._jobstores_lock:
        store = scheduler._lookup_jobstore(store_alias)
        if type(store) is not MemoryJobStore:
            return None
        index: dict[str, _Entry] = store._jobs_index
        entries: list[_Entry] = []
        for job, args, run_at in jobs:
            if job in index or job in added:
                continue
            added.add(job)
            entries.append((_copy(template, job, args, run_at), datetime_to_utc_timestamp(run_at)))
        store._jobs = _merged(store._jobs, entries)
        index.update((entry[0].id, entry) for entry in entries)
    for entry in entries:
        scheduler._dispatch_event(JobEvent(EVENT_JOB_ADDED, entry[0].id, store_alias))
    if added and scheduler.state == STATE_RUNNING:
        scheduler.wakeup()
    return added


class LoopScheduler(AsyncIOScheduler):  # type: ignore[misc]  # APScheduler 3 is untyped
    """An ``AsyncIOScheduler`` whose wake-ups from the loop's own thread are one coalesced ``call_soon``.

    APScheduler's wake-up is ``call_soon_threadsafe`` whatever the caller's thread (a write to
    the loop's self-pipe and a read on the next turn), followed by a pass over the due jobs;
    each re-armed credential paid for both. Wake-ups from another thread keep that path.
    """

    _wakeup_pending = False

    def wakeup(self) -> None:
        loop = self._eventloop
        if loop is None:
            return
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if not on_loop:
            loop.call_soon_threadsafe(self._wake_now)
        elif not self._wakeup_pending:
            self._wakeup_pending = True
            loop.call_soon(self._wake_now)

    def _wake_now(self) -> None:
        self._wakeup_pending = False
        self._stop_timer()
        self._start_timer(self._process_jobs())

    def _start_timer(self, wait_seconds: float | None) -> None:
        self._stop_timer()
        if wait_seconds is not None and self._eventloop is not None:
            self._timeout = self._eventloop.call_later(wait_seconds, self._wake_now)


class _ParkAfterFiring(BaseTrigger):  # type: ignore[misc]
    """The trigger of a credential's job: the engine sets each next run; after firing, the job is parked."""

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        return now + PARKED

    def __str__(self) -> str:
        return "armed by the engine"


class CredentialJobs:
    """The scheduler's jobs for credentials: arm (or move), cancel, and look up a fire time."""

    def __init__(self, scheduler: AsyncIOScheduler, run: Runner, *, prefix: str = "cred:") -> None:
        self.scheduler = scheduler
        self._run = run
        self._prefix = prefix  # "cred:" for the runs (see job_id), "verify:" for the read-backs
        # A job store of its own: moving a job is a delete and an insert in the store's sorted list,
        # a copy of everything after each point, so two stores of n jobs cost half of one of 2n
        # (at 100,000 credentials, about four moves per rotation of ~45 us instead of ~86 us).
        self._store = "syncd:" + prefix.rstrip(":")
        with contextlib.suppress(ValueError):  # the scheduler has it already (another CredentialJobs of this prefix)
            scheduler.add_jobstore(MemoryJobStore(), self._store)
        self._trigger = _ParkAfterFiring()
        self._planned: dict[str, float] = {}
        self._tz: tzinfo = UTC
        self._template: Job | None = None  # the first job added, validated by APScheduler (see add_copy)
        self._batch: dict[str, float] | None = None  # arms held back by `batched`, armed when it ends

    def arm(self, name: str, when: float) -> None:
        """Make ``when`` the credential's one next run (moving its job, or adding it the first time)."""
        self._planned[name] = when
        if self._batch is not None:
            self._batch[name] = when
            return
        job = self._prefix + name
        run_at = datetime.fromtimestamp(when, self._tz)
        if self.scheduler.get_job(job, self._store) is not None:
            self.scheduler.modify_job(job, self._store, next_run_time=run_at)
            return
        if self._template is not None and add_copy(self.scheduler, self._template, job, [name], run_at) is not None:
            return
        self._template = self.scheduler.add_job(
            self._fire,
            self._trigger,
            args=[name],
            id=job,
            jobstore=self._store,
            next_run_time=run_at,
            misfire_grace_time=None,
            coalesce=True,
            max_instances=UNBOUNDED_INSTANCES,
        )

    def arm_many(self, plans: Iterable[tuple[str, float]]) -> None:
        """:meth:`arm` for many credentials (the last time given for a name counts).

        Credentials without a job get copies of the template added together (`add_copies`);
        a credential that has one has it moved, as :meth:`arm` does.
        """
        wanted = dict(plans)
        if not wanted:
            return
        if self._template is None:  # the first job goes through add_job: APScheduler validates it
            first = next(iter(wanted))
            self.arm(first, wanted.pop(first))
        self._planned.update(wanted)
        jobs: list[tuple[str, list[object], datetime]] = [
            (self._prefix + name, [name], datetime.fromtimestamp(when, self._tz)) for name, when in wanted.items()
        ]
        added = add_copies(self.scheduler, self._template, jobs) if self._template is not None and jobs else None
        for (job, _, _), (name, when) in zip(jobs, wanted.items(), strict=True):
            if added is None or job not in added:
                self.arm(name, when)

    @contextlib.contextmanager
    def batched(self) -> Iterator[None]:
        """Hold back every :meth:`arm` made inside, and arm them together (`arm_many`) at the end.

        A credential's planned time is recorded at once (``_planned``), its job moves or appears
        when the block ends: only code that runs inside the block can see the difference. Nested
        blocks arm at the end of the outermost.
        """
        if self._batch is not None:
            yield
            return
        batch: dict[str, float] = {}
        self._batch = batch
        try:
            yield
        finally:
            self._batch = None
            self.arm_many(batch.items())

    async def _fire(self, name: str) -> None:
        await self._run(name, self._planned.get(name))

    def cancel(self, name: str) -> None:
        self._planned.pop(name, None)
        if self._batch is not None:
            self._batch.pop(name, None)
        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(self._prefix + name, self._store)

    def armed_at(self, name: str) -> float | None:
        """The fire time of the credential's job, or None when it has none."""
        job = self.scheduler.get_job(self._prefix + name, self._store)
        when = getattr(job, "next_run_time", None) if job is not None else None
        return when.timestamp() if isinstance(when, datetime) else None

    def lost(self, plans: Iterable[Plan], now: float, grace: float) -> Iterator[Lost]:
        """The credentials among ``plans`` that have fallen off the schedule (see `is_lost`)."""
        for name, planned, running in plans:
            # Cheap test first, no job lookup: only an overdue credential that is not running can be lost.
            if planned is None or not is_lost(planned, now, running=running, armed_at=None, grace=grace):
                continue
            armed_at = self.armed_at(name)
            if is_lost(planned, now, running=running, armed_at=armed_at, grace=grace):
                yield name, planned, armed_at
