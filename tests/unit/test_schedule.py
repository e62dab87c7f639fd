"""syncd.schedule: the lost-run rule (table-driven) and, through APScheduler itself, the race it closes."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from syncd.schedule import FIRED_GRACE, PARKED, CredentialJobs, LoopScheduler, Rounds, is_lost, job_id

PARKED_S = PARKED.total_seconds()

# planned, now, running, armed_at, lost
CASES = [
    (None, 100.0, False, None, False),  # never planned (before its first run)
    (100.0, 103.0, False, None, False),  # overdue within the grace: the job just fired, the run starts
    (100.0, 106.0, True, None, False),  # overdue but running: the run will arm the next one
    (100.0, 106.0, False, None, True),  # overdue, no job, not running: lost
    (100.0, 106.0, False, 100.0, False),  # the job waits at the planned time: late (busy loop), not lost
    (100.0, 106.0, False, 104.0, False),  # a job within the grace of the plan
    (100.0, 106.0, False, 500.0, True),  # a job for a much later time than planned: lost
    (100.0, 100.0, False, None, False),  # planned now
    (100.0, 106.0, False, 101.0 + PARKED_S, False),  # fired at 101, its run not started yet: waiting
    (100.0, 160.0, False, 101.0 + PARKED_S, False),  # ... 59 s later (FIRED_GRACE is 60)
    (100.0, 162.0, False, 101.0 + PARKED_S, True),  # ... 61 s later: the loop never started it, lost
    (100.0, 106.0, True, 101.0 + PARKED_S, False),  # fired and running
]


@pytest.mark.parametrize(("planned", "now", "running", "armed_at", "lost"), CASES)
def test_is_lost(planned, now, running, armed_at, lost):
    assert is_lost(planned, now, running=running, armed_at=armed_at, grace=5.0) is lost


def _due_now() -> DateTrigger:
    # Already due when the scheduler wakes up: a retry a few milliseconds away on a busy loop.
    return DateTrigger(run_date=datetime.fromtimestamp(time.time() - 0.01, UTC))


async def test_old_pattern_loses_the_next_run_when_it_is_already_due():
    """The pattern syncd used: a run re-adds its own date job (max_instances=1) before it returns.

    APScheduler releases the instance only in the task's done callback, after its wake-up
    has already tried the new job: it is skipped and, being a date job, removed for good.
    """
    scheduler = AsyncIOScheduler(timezone=UTC)
    skipped = asyncio.Event()
    scheduler.add_listener(lambda _e: skipped.set(), EVENT_JOB_MAX_INSTANCES)
    runs: list[float] = []

    async def run() -> None:
        try:
            runs.append(time.time())
        finally:
            scheduler.add_job(run, _due_now(), id="cred:x", replace_existing=True, max_instances=1)

    scheduler.start()
    try:
        scheduler.add_job(run, _due_now(), id="cred:x", replace_existing=True, max_instances=1)
        await asyncio.wait_for(skipped.wait(), 5)
        await asyncio.sleep(0.2)  # would be ample for the next run, were it still scheduled
        assert len(runs) == 1
        assert scheduler.get_job("cred:x") is None, "the credential has no job left: never refreshed again"
    finally:
        scheduler.shutdown(wait=False)


async def test_credential_jobs_keep_every_run_when_the_next_is_already_due():
    """The same self-re-arming run through CredentialJobs: no run is skipped, the job lives on."""
    scheduler = AsyncIOScheduler(timezone=UTC)
    skipped: list[object] = []
    scheduler.add_listener(skipped.append, EVENT_JOB_MAX_INSTANCES)
    runs: list[str] = []
    enough = asyncio.Event()

    async def run(name: str, planned: float) -> None:
        try:
            runs.append(name)
            if len(runs) >= 50:
                enough.set()
        finally:
            if not enough.is_set():
                jobs.arm(name, time.time() - 0.01)

    jobs = CredentialJobs(scheduler, run)
    scheduler.start()
    try:
        jobs.arm("x", time.time() - 0.01)
        await asyncio.wait_for(enough.wait(), 10)
        assert not skipped
        assert set(runs) == {"x"} and len(runs) >= 50
    finally:
        scheduler.shutdown(wait=False)


async def test_credential_jobs_arm_moves_cancel_removes_and_armed_at_reports():
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.start()

    async def run(name: str, planned: float) -> None:
        raise AssertionError("nothing here is due")

    jobs = CredentialJobs(scheduler, run)
    try:
        later = time.time() + 3600
        jobs.arm("x", later)
        jobs.arm("x", later + 60)  # moved, not doubled
        assert [j.id for j in scheduler.get_jobs()] == [job_id("x")]
        assert jobs.armed_at("x") == pytest.approx(later + 60, abs=1e-3)
        jobs.cancel("x")
        jobs.cancel("x")  # cancelling twice is harmless
        assert jobs.armed_at("x") is None and scheduler.get_jobs() == []
    finally:
        scheduler.shutdown(wait=False)


async def test_a_fired_run_the_loop_has_not_started_is_not_lost():
    """Between a job's firing (it parks) and its run's first step, the run waits in the loop's queue.

    The watchdog must leave it alone (re-arming it fired a second run behind the first, a storm at
    100,000 credentials); once FIRED_GRACE has passed with the run still not started, it is lost.
    """
    scheduler = LoopScheduler(timezone=UTC)
    scheduler.start()
    started: list[str] = []

    async def run(name: str, planned: float | None) -> None:
        started.append(name)

    jobs = CredentialJobs(scheduler, run)
    try:
        planned = time.time() - 10.0  # overdue by more than the grace
        jobs.arm("x", planned)
        scheduler._process_jobs()  # fires it now: the run's task is created, not yet started
        assert started == []
        armed_at = jobs.armed_at("x")
        assert armed_at is not None and armed_at - planned > PARKED_S / 2, "the fired job is parked"
        now = time.time()
        assert list(jobs.lost([("x", planned, False)], now, grace=5.0)) == []
        later = armed_at - PARKED_S + FIRED_GRACE + 1.0
        assert [n for n, _, _ in jobs.lost([("x", planned, False)], later, grace=5.0)] == ["x"]
        await asyncio.sleep(0.05)
        assert started == ["x"]
    finally:
        scheduler.shutdown(wait=False)


async def test_batched_arms_add_copies_in_the_job_stores_order_and_move_existing_jobs():
    """Pins the MemoryJobStore internals `add_copies` merges into: ``_jobs`` sorted by (next run, id),
    ``_jobs_index`` by id; a later lookup, move or removal by APScheduler finds every job."""
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.start()

    async def run(name: str, planned: float) -> None:
        raise AssertionError("nothing here is due")

    jobs = CredentialJobs(scheduler, run)
    try:
        base = time.time() + 3600
        jobs.arm("moved", base + 500)  # the template, through add_job
        with jobs.batched():
            for i in range(300):
                jobs.arm(f"c{i:03d}", base + (i * 7919) % 300)  # out of order, some times shared
            jobs.arm("moved", base + 1)  # an existing job: moved, not added twice
            jobs.arm("c000", base + 299.5)  # the last arm of a name counts
            jobs.arm("gone", base)
            jobs.cancel("gone")  # cancelled inside the batch: never added
            assert scheduler.get_job(job_id("c001")) is None, "held back until the batch ends"
        store = scheduler._jobstores["syncd:cred"]  # a job store per CredentialJobs, not APScheduler's default
        assert scheduler._jobstores["default"]._jobs == []
        order = [(ts, job.id) for job, ts in store._jobs]
        assert order == sorted(order) and len(order) == 301
        assert set(store._jobs_index) == {job.id for job, _ in store._jobs}
        assert jobs.armed_at("c000") == pytest.approx(base + 299.5, abs=1e-3)
        assert jobs.armed_at("moved") == pytest.approx(base + 1, abs=1e-3)
        assert jobs.armed_at("gone") is None
        copy = scheduler.get_job(job_id("c123"))
        template = scheduler.get_job(job_id("moved"))
        assert copy.func is template.func and copy.trigger is template.trigger and copy.args == ("c123",)
        assert copy.max_instances == template.max_instances and copy.misfire_grace_time is None
        assert copy.kwargs == {} and copy.kwargs is template.kwargs  # one empty dict, not one per job
        jobs.arm("c123", base + 10_000)  # APScheduler's own update and removal find the merged jobs
        jobs.cancel("c200")
        order = [(ts, job.id) for job, ts in store._jobs]
        assert order == sorted(order) and len(order) == 300 and order[-1][1] == job_id("c123")
    finally:
        scheduler.shutdown(wait=False)


async def test_runs_and_read_backs_keep_their_jobs_in_stores_of_their_own():
    """A move costs a copy of the store's list after the point: two lists of n, not one of 2n."""
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.start()

    async def run(name: str, planned: float | None) -> None:
        raise AssertionError("nothing here is due")

    runs, reads = CredentialJobs(scheduler, run), CredentialJobs(scheduler, run, prefix="verify:")
    try:
        later = time.time() + 3600
        for name in ("a", "b"):
            runs.arm(name, later)
            reads.arm(name, later + 1)
        assert {j.id for j in scheduler.get_jobs("syncd:cred")} == {"cred:a", "cred:b"}
        assert {j.id for j in scheduler.get_jobs("syncd:verify")} == {"verify:a", "verify:b"}
        again = CredentialJobs(scheduler, run)  # a second one with the same prefix shares the store
        assert again.armed_at("a") == pytest.approx(later, abs=1e-3)
        reads.cancel("a")
        assert runs.armed_at("a") is not None and reads.armed_at("a") is None
    finally:
        scheduler.shutdown(wait=False)


def test_rounds_hand_out_every_item_once_per_pass_in_slices():
    """Slices of ceil(n / per_pass) read from the live collection: a pass takes at most per_pass calls."""
    items = {f"c{i:02d}": i for i in range(12)}
    rounds: Rounds[tuple[str, int]] = Rounds(5)
    first_pass = [[v for _, v in rounds.next_slice(items.items())] for _ in range(4)]
    assert first_pass == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    items["c12"] = 12  # added at the end: this pass picks it up before the next one starts
    second: list[int] = []
    for _ in range(5):
        second += [v for _, v in rounds.next_slice(items.items())]
    assert second[0] == 12 and sorted(second[1:]) == list(range(13))[: len(second) - 1]
    assert set(second) == set(range(13))


def test_rounds_of_nothing_and_of_one():
    rounds: Rounds[int] = Rounds(5)
    assert rounds.next_slice([]) == []
    assert [rounds.next_slice([7]) for _ in range(3)] == [[7], [7], [7]]
