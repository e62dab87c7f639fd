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
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

__all__ = ["UNBOUNDED_INSTANCES", "WATCHDOG_GRACE", "CredentialJobs", "Lost", "arm", "is_lost", "job_id"]

#: APScheduler's per-job instance limit, set out of reach: the engine decides what runs.
UNBOUNDED_INSTANCES = sys.maxsize

#: How far past its planned time a run must be before the watchdog calls it lost. A busy
#: loop makes runs late by milliseconds, rarely by a second; a lost run is late forever.
WATCHDOG_GRACE = 5.0

Runner = Callable[[str, float], Awaitable[None]]
#: (name, planned next run, running) of a credential, as the watchdog sees it.
Plan = tuple[str, float | None, bool]
#: (name, planned next run, fire time of its job or None) of a credential off the schedule.
Lost = tuple[str, float, float | None]


def job_id(name: str) -> str:
    return f"cred:{name}"


def is_lost(planned: float | None, now: float, *, running: bool, armed_at: float | None, grace: float) -> bool:
    """Whether a credential has fallen off the schedule and must be re-armed.

    ``planned`` is the engine's planned next run, ``armed_at`` the fire time of the job
    the scheduler holds for it (None: no job). A credential that runs, or has no plan
    yet, is never lost; one whose job still waits to fire at (about) the planned time is
    only late (the scheduler will fire it); one overdue by more than ``grace`` with no
    job, or a job for a much later time, is lost.
    """
    if running or planned is None or now - planned <= grace:
        return False
    return armed_at is None or armed_at - planned > grace


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


class CredentialJobs:
    """The scheduler's jobs for credentials: arm (or move), cancel, and look up a fire time."""

    def __init__(self, scheduler: AsyncIOScheduler, run: Runner) -> None:
        self.scheduler = scheduler
        self._run = run

    def arm(self, name: str, when: float) -> None:
        """Make ``when`` the credential's one next run (replacing any job it had)."""
        arm(self.scheduler, job_id(name), self._run, [name, when], when)

    def cancel(self, name: str) -> None:
        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(job_id(name))

    def armed_at(self, name: str) -> float | None:
        """The fire time of the credential's job, or None when it has none."""
        job = self.scheduler.get_job(job_id(name))
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
