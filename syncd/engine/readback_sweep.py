"""When the read-backs between runs happen: their planned times in one `schedule.Sweep`.

A rotation plans a target's next read-back (`readback.plan_next`) and hands the credential
here; the sweep's one job fires at the earliest planned time and hands over every
credential due by then, whose reads go together (`readback.verify_many`). A credential
found without its token is handed back to the engine to run (and write) at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from apscheduler.schedulers.base import BaseScheduler

from syncd import schedule, verify
from syncd.engine.state import CredentialState

#: The scheduler's id for the sweep's job.
JOB_ID = "syncd:readbacks"


class ReadBackSweep:
    """Plans each credential's next read-back and reads back, together, those that are due."""

    def __init__(
        self,
        credentials: Mapping[str, CredentialState],
        *,
        verify_many: Callable[[list[CredentialState]], Awaitable[list[CredentialState]]],
        rewrite: Callable[[CredentialState], None],
        clock: Callable[[], float],
    ) -> None:
        self.credentials = credentials  # the engine's, kept current by it (a reload adds and removes)
        self._verify_many = verify_many
        self._rewrite = rewrite
        self.clock = clock
        self.sweep: schedule.Sweep | None = None  # from `start` on
        self.stopping = False

    def start(self, scheduler: BaseScheduler) -> None:
        self.sweep = schedule.Sweep(scheduler, self.fire, job_id=JOB_ID, clock=self.clock)

    def cancel(self, name: str) -> None:
        if self.sweep is not None:
            self.sweep.cancel(name)

    def plan(self, st: CredentialState, not_before: float = 0.0) -> None:
        """Plan the credential's next read-back, its targets' earliest (its runs and next_refresh are not touched)."""
        due = [ts.verify_at for ts in st.targets if ts.verify_at is not None]
        if self.sweep is None or self.stopping or not due:
            return
        # The fire plans it again after reading; st.verifying keeps one credential's reads serial.
        self.sweep.arm(st.name, max(min(due), not_before))

    async def fire(self, names: list[str]) -> None:
        """The sweep's fire: read back every due target of these credentials, together."""
        now = self.clock()
        ready: list[CredentialState] = []
        for name in names:
            st = self.credentials.get(name)
            if st is None or self.stopping or st.verifying:
                continue  # a read-back in progress plans the next one when it is done
            if st.running:  # a run is writing: read back a little later, not in the middle of it
                for ts in st.targets:
                    if ts.verify_at is not None:
                        ts.verify_at = max(ts.verify_at, now + verify.MIN_VERIFY_GAP)
                self.plan(st, not_before=now + verify.MIN_VERIFY_GAP)
                continue
            st.verifying = True
            ready.append(st)
        lost: list[CredentialState] = []
        try:
            lost = await self._verify_many(ready)
        finally:
            # A read-back that was not due when the sweep took it (its target does not hold the held
            # token, or that token expired) keeps its past verify_at: planned at that time, it would be
            # taken at every fire, over and over (seen at 100,000 credentials in start-up).
            after = self.clock() + verify.MIN_VERIFY_GAP
            for st in ready:
                st.verifying = False
                if self.credentials.get(st.name) is st:
                    self.plan(st, not_before=after)
        for st in lost:
            if not st.running and self.credentials.get(st.name) is st:
                self._rewrite(st)  # a target lost its token: the run writes it again now
