"""One APScheduler job per credential, kept for its life and moved to each next run (see `syncd.schedule`)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime, tzinfo

from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

from syncd.schedule.copies import add_copies, add_copy
from syncd.schedule.watchdog import PARKED, Lost, Plan, is_lost

__all__ = ["UNBOUNDED_INSTANCES", "CredentialJobs", "ParkAfterFiring", "Runner", "job_id"]

#: APScheduler's per-job instance limit, set out of reach: the engine decides what runs.
UNBOUNDED_INSTANCES = sys.maxsize

Runner = Callable[[str, float | None], Awaitable[None]]


def job_id(name: str) -> str:
    return f"cred:{name}"


class ParkAfterFiring(BaseTrigger):  # type: ignore[misc]
    """The trigger of a job whose next run its owner sets: after firing, the job is parked (`PARKED`)."""

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        return now + PARKED

    def __str__(self) -> str:
        return "armed by its owner"


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
        self._trigger = ParkAfterFiring()
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
