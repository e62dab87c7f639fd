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
a second line, `watchdog.is_lost` lets a periodic watchdog find a credential whose
planned run is overdue while no job is armed for it and nothing runs it.

A reschedule is cheap, because one happens after every run: each credential keeps
one job for its whole life, whose trigger parks it far in the future once it has
fired, and arming it only moves its next run time (no new ``Job``, no
``inspect.signature`` check, no replace). `loop.LoopScheduler` wakes itself with
a plain ``call_soon`` when woken from the loop's own thread (APScheduler always
writes to the loop's self-pipe), and coalesces the wake-ups of one loop turn.

Adding a job is cheap too, because start-up adds one per credential: 10,000 at 10,000
credentials. APScheduler validates each new ``Job`` alike
(``inspect.signature`` of the same function, the same trigger and options), about a
third of a millisecond each; only the first job of a `jobs.CredentialJobs` goes
through ``add_job``, the others are copies of it with their own id, argument and time
(`copies.add_copy`). Start-up arms them in batches (`CredentialJobs.batched`,
`copies.add_copies`): one merge into the job store's sorted list under its lock and one
wake-up per batch, instead of a binary search, a list insert and a wake-up per job.

The read-backs between rotations have no job each: `sweep.Sweep` keeps their planned
times in a heap behind one job, which hands the reads due together to the engine (one
thread hop for many files).

The package: `jobs` (`CredentialJobs`, one job per credential), `copies` (adding jobs as
copies of a validated one), `loop` (`LoopScheduler`), `sweep` (`Sweep`, many planned
times behind one job), `watchdog` (what counts as lost, and the slices of the heartbeat's
check).
"""

from __future__ import annotations

from syncd.schedule.copies import add_copies, add_copy
from syncd.schedule.jobs import UNBOUNDED_INSTANCES, CredentialJobs, Runner, job_id
from syncd.schedule.loop import LoopScheduler
from syncd.schedule.sweep import SWEEP_GAP, SWEEP_LIMIT, Sweep
from syncd.schedule.watchdog import (
    FIRED_GRACE,
    PARKED,
    WATCHDOG_GRACE,
    WATCHDOG_PASS_BEATS,
    Lost,
    Plan,
    Rounds,
    is_lost,
)

__all__ = [
    "FIRED_GRACE",
    "PARKED",
    "SWEEP_GAP",
    "SWEEP_LIMIT",
    "UNBOUNDED_INSTANCES",
    "WATCHDOG_GRACE",
    "WATCHDOG_PASS_BEATS",
    "CredentialJobs",
    "LoopScheduler",
    "Lost",
    "Plan",
    "Rounds",
    "Runner",
    "Sweep",
    "add_copies",
    "add_copy",
    "is_lost",
    "job_id",
]
