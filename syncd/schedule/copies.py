"""Jobs added as copies of one APScheduler validated, one at a time or merged in by the batch.

APScheduler validates each new ``Job`` alike (``inspect.signature`` of the same function,
the same trigger and options), about a third of a millisecond each; start-up adds two per
credential. Only a `CredentialJobs`' first job goes through ``add_job``; the others are
copies of it with their own id, argument and time. These functions use APScheduler's
``MemoryJobStore`` internals (its sorted ``_jobs`` list and ``_jobs_index``), pinned by
``tests/unit/test_schedule.py``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from datetime import datetime

from apscheduler.events import EVENT_JOB_ADDED, JobEvent
from apscheduler.job import Job
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_RUNNING, STATE_STOPPED
from apscheduler.util import datetime_to_utc_timestamp

__all__ = ["add_copies", "add_copy"]


#: A Job's attributes (its ``__slots__``), copied by :func:`add_copy`.
_JOB_FIELDS = tuple(k for k in Job.__slots__ if k != "__weakref__")


def _copy(template: Job, job: str, args: list[object], run_at: datetime) -> Job:
    copy = Job.__new__(Job)
    for field in _JOB_FIELDS:
        setattr(copy, field, getattr(template, field))
    # kwargs stays the template's empty dict, shared (64 bytes a job, a job per credential):
    # APScheduler only unpacks it, and a change to a job's kwargs replaces the dict.
    copy.id, copy.args, copy.next_run_time = job, tuple(args), run_at
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
