"""The daemon around the rotations: set-up, start, the schedule, reload, drain and stop.

One APScheduler job per credential, armed for the next run (`decide.next_run`) after
every run (``syncd.schedule`` owns the jobs, and a watchdog on the heartbeat re-arms a
credential left without one). What a run does is `syncd.engine.rotation`'s; what a
credential adopts at start-up, `syncd.engine.adopt`'s; when targets are read back between
runs, `syncd.engine.readback_sweep`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC
from typing import Any

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from syncd import heap, identity, logs, replicas, schedule
from syncd.config import Config, CredentialConfig, StoreConfig
from syncd.engine import decide, drain, once, reload, report, takeover
from syncd.engine.adopt import YIELD_EVERY, adopt_all
from syncd.engine.minting import HttpClients, Minter
from syncd.engine.plan import plan_findings
from syncd.engine.readback_sweep import ReadBackSweep
from syncd.engine.rotation import Rotation
from syncd.engine.state import CredentialState, RunReport
from syncd.metrics import Metrics
from syncd.payload import TokenPayload, to_rfc3339
from syncd.stores.base import Finding, Store, create_store

log = logs.get_logger("syncd.engine")


class Engine:
    """Owns the scheduler, the shared HTTP client, the stores and every credential's state."""

    def __init__(
        self,
        config: Config,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.rng = rng or random.Random()  # jitter, not cryptography  # noqa: S311  # nosec B311
        self._http_clients = HttpClients(self._settings, shared=http_client)
        self.stores: dict[str, Store] = {}
        self._store_configs: dict[str, StoreConfig] = {}
        self.credentials: dict[str, CredentialState] = {}
        self.scheduler: AsyncIOScheduler | None = None
        self.jobs: schedule.CredentialJobs | None = None
        self.watchdog_grace = schedule.WATCHDOG_GRACE
        self._watch_rounds: schedule.Rounds[tuple[str, CredentialState]] = schedule.Rounds(schedule.WATCHDOG_PASS_BEATS)
        self._stopping = False
        self.started_at = clock()
        self.loop_heartbeat = clock()
        self.scheduler_heartbeat = clock()
        self._heartbeat_task: asyncio.Task[None] | None = None
        # Read-backs between runs. The rotation (built next, as it plans them) is looked up at each fire.
        self.readbacks = ReadBackSweep(
            self.credentials,
            verify_many=lambda states: self.rotation.verify_many(states),  # noqa: PLW0108  (late-bound)
            rewrite=self._schedule,
            clock=clock,
        )
        # The settings are read at each use: a reload replaces self.config.
        self.minter = Minter(
            settings=self._settings, http_client=self.http_client, metrics=self.metrics, clock=clock, rng=self.rng
        )
        self.rotation = Rotation(
            minter=self.minter,
            settings=self._settings,
            metrics=self.metrics,
            clock=clock,
            rng=self.rng,
            readback_planned=self.readbacks.plan,
        )

    def _settings(self) -> Config:
        return self.config

    # ------------------------------------------------------------------ set-up

    def _build_stores(self, config: Config, reuse: Mapping[str, Store] | None = None) -> dict[str, Store]:
        stores: dict[str, Store] = {}
        for name, scfg in config.stores.items():
            if reuse and name in reuse and self._store_configs.get(name) == scfg:
                stores[name] = reuse[name]
            else:
                stores[name] = create_store(name, scfg)
        return stores

    def _new_state(self, cfg: CredentialConfig, stores: Mapping[str, Store]) -> CredentialState:
        st = CredentialState.for_config(cfg, self.config.defaults, stores)
        takeover.place(st, self.config)
        return st

    def http_client(self, cfg: CredentialConfig) -> httpx.AsyncClient:
        """The HTTP client for a credential's mints (see `minting.HttpClients`)."""
        return self._http_clients.for_credential(cfg)

    def setup(self) -> None:
        """Create stores and credential states (no I/O yet)."""
        self.stores = self._build_stores(self.config)
        self._store_configs = dict(self.config.stores)
        with heap.collector_paused():
            for cfg in self.config.credentials:
                self.credentials[cfg.name] = self._new_state(cfg, self.stores)
            for st in self.credentials.values():
                self._publish(st)

    def plan(self) -> list[Finding]:
        """Quota/cost findings for every target, and a replica plan whose last rank acts too late."""
        return plan_findings(self.config, self.stores) + replicas.replica_findings(self.config)

    # ------------------------------------------------------------------ the run and its schedule

    async def run_credential(self, name: str, planned: float | None = None, *, force_mint: bool = False) -> None:
        """The scheduled job: one run of the credential's rotation, then arm its next run."""
        st = self.credentials.get(name)
        if st is None or self._stopping:
            return
        now = self.clock()
        if planned is not None:
            self.metrics.schedule_lateness.observe(max(now - planned, 0.0))
        if st.running:
            return
        st.running = True
        generation = st.generation
        try:
            await self.rotation.run(st, force_mint=force_mint)
            self._publish(st)
        finally:
            st.running = False
            if not self._stopping and self.credentials.get(name) is st and st.generation == generation:
                self._schedule(st)
            elif name not in self.credentials:  # removed by a reload while it ran: no ghost series
                self.metrics.forget_credential(name, [ts.label for ts in st.targets])

    def _next_run(self, st: CredentialState) -> float:
        token = st.token
        return decide.next_run(
            self.clock(),
            token,
            mint_retry_at=st.mint_retry_at,
            last_attempt=st.last_attempt,
            min_interval=st.policy.min_interval,
            unwritten_retry_at=[ts.retry_at for ts in st.targets if token is not None and not ts.holds(token)],
            due_at=takeover.due_at(st),
        )

    def _schedule(self, st: CredentialState, at: float | None = None) -> None:
        when = at if at is not None else self._next_run(st)
        st.next_run = when
        self.metrics.next_refresh.labels(st.name).set(when)
        if self.jobs is not None:
            self.jobs.arm(st.name, when)

    def _remove_job(self, name: str) -> None:
        if self.jobs is not None:
            self.jobs.cancel(name)
        self.readbacks.cancel(name)

    def _set_token(self, st: CredentialState, payload: TokenPayload) -> None:
        self.rotation.set_token(st, payload)

    def _publish(self, st: CredentialState) -> None:
        report.publish(self.metrics, st)

    # ------------------------------------------------------------------ start

    async def start(self) -> None:
        """Adopt stored tokens, then schedule every credential. Call inside the running loop."""
        if not self.stores:
            self.setup()
        defaults = {"misfire_grace_time": None, "coalesce": True}
        self.scheduler = schedule.LoopScheduler(timezone=UTC, job_defaults=defaults)
        self.scheduler.start()
        self.jobs = schedule.CredentialJobs(self.scheduler, self.run_credential)
        self.readbacks.start(self.scheduler)
        # Unbounded for the race `syncd.schedule` describes: a loop stall right after a beat was
        # handed over finds the next one due while the last still counts as running, and
        # APScheduler would skip it with a warning. `_beat` never awaits, so beats cannot overlap.
        self.scheduler.add_job(
            self._beat, "interval", seconds=1, id="syncd:heartbeat", max_instances=schedule.UNBOUNDED_INSTANCES
        )
        self._heartbeat_task = asyncio.get_running_loop().create_task(self._loop_beat())
        await self._start_credentials(list(self.credentials.values()))

    async def _start_credentials(self, states: list[CredentialState], remint: Iterable[str] = ()) -> None:
        """Adopt what the targets hold, then schedule; a credential in ``remint`` mints at once.

        The runs' jobs are armed in batches (`schedule.CredentialJobs.batched`), every
        ``YIELD_EVERY`` credentials, before the loop turns (so the watchdog never sees a planned
        run without its job); a read-back the adoption plans is a time in `schedule.Sweep`.
        """
        with heap.collector_paused():
            await self._adopt_and_schedule(states, set(remint))

    async def _adopt_and_schedule(self, states: list[CredentialState], remint: set[str]) -> None:
        await adopt_all(self.rotation, states, self.config.daemon.startup_concurrency)
        now = self.clock()
        adopted = 0
        for first in range(0, len(states), YIELD_EVERY):
            if first:
                await asyncio.sleep(0)
            with _batched(self.jobs):
                for st in states[first : first + YIELD_EVERY]:
                    if st.name in remint and st.token is not None:
                        # Still served (the targets hold it) until the new identity's token replaces it,
                        # but due now, whatever the targets' copy says.
                        self._set_token(
                            st, dataclasses.replace(st.token, refresh_after=min(st.token.refresh_after, now))
                        )
                        st.adopted = False
                    if st.token is None and st.rank > 0:
                        st.waiting_since = now  # a follower looks k x takeover_delay later (decide.wake_at)
                    self.metrics.init_credential(st.name, [ts.label for ts in st.targets])
                    self._publish(st)
                    if st.adopted:
                        adopted += 1
                    self._schedule(st)
        log.info("started", credentials=len(states), adopted=adopted, to_mint=len(states) - adopted)

    async def _beat(self) -> None:
        # A coroutine job runs on the loop itself; a plain function would run in the default
        # thread pool, which slow file writes share, and /livez would fail because of a store.
        self.scheduler_heartbeat = self.clock()
        self._watchdog()

    def _watchdog(self) -> None:
        """Re-arm the credentials of this beat's slice that have fallen off the schedule (`syncd.schedule.watchdog`)."""
        if self.jobs is None or self._stopping:
            return
        now = self.clock()
        part = self._watch_rounds.next_slice(self.credentials.items())
        plans = ((name, st.next_run, st.running) for name, st in part)
        for name, planned, armed_at in list(self.jobs.lost(plans, now, self.watchdog_grace)):
            st = self.credentials[name]
            st.rearmed += 1
            st.last_rearmed = now
            self.metrics.schedule_rearmed.inc()
            log.warning(
                "schedule_rearmed",
                credential=st.name,
                planned=to_rfc3339(planned),
                overdue=round(now - planned, 3),
                job=to_rfc3339(armed_at) if armed_at is not None else None,
                rearmed=st.rearmed,
            )
            self._schedule(st, at=now)

    async def _loop_beat(self) -> None:
        while True:
            self.loop_heartbeat = self.clock()
            await asyncio.sleep(1.0)

    # ------------------------------------------------------------------ reload, once

    async def reload(self, new: Config) -> dict[str, list[str]]:
        """Apply a new configuration: added credentials start, removed stop, changed restart."""
        old_stores = self.stores
        stores = self._build_stores(new, reuse=old_stores)
        changed_stores = {n for n in new.stores if stores[n] is not old_stores.get(n)}
        self.config = new
        known = reload.needs_digest(self.credentials, new)
        digests = await asyncio.to_thread(lambda: {c.name: identity.digest(c) for c in known})
        change = reload.plan_reload(self.credentials, new, changed_stores, digests)
        for st in self.credentials.values():  # [daemon] replicas may have changed: ranks with it
            takeover.place(st, new)
        for name in change.removed:
            st = self.credentials.pop(name)
            st.generation += 1
            self._remove_job(name)
            self.metrics.forget_credential(name, [ts.label for ts in st.targets])
            for handle in st.retired.handles():
                logs.forget_secret(handle)
            if st.token is not None:
                logs.forget_secret(st.token.access_token.get_secret_value())
        to_start: list[CredentialState] = []
        for restart in change.restart:
            name = restart.cfg.name
            st = self._new_state(restart.cfg, stores)
            old = self.credentials.get(name)
            if old is not None:
                old.generation += 1
                self._remove_job(name)
                st.token, st.minted_with, st.retired = old.token, old.minted_with, old.retired
                if restart.remint:
                    log.info(
                        "identity_changed", credential=name, changed=restart.remint, action="minting a new token now"
                    )
                self.metrics.forget_credential(name, [ts.label for ts in old.targets])
            self.credentials[name] = st
            to_start.append(st)
        self.stores = stores
        self._store_configs = dict(new.stores)
        for name, store in old_stores.items():
            if store is not stores.get(name):
                with contextlib.suppress(Exception):
                    await store.aclose()
        summary = change.summary()
        if to_start:
            await self._start_credentials(to_start, remint=summary["reminted"])
        log.info(
            "reloaded", **{k: v for k, v in summary.items() if k != "unchanged"}, unchanged=len(summary["unchanged"])
        )
        return summary

    async def run_once(
        self, names: Iterable[str] | None = None, progress: Callable[[RunReport], None] | None = None
    ) -> list[RunReport]:
        """Mint and write every (or the named) credential once, without a scheduler."""
        if not self.stores:
            self.setup()
        wanted = list(names) if names is not None else list(self.credentials)
        return await once.run_once(self.rotation, self.credentials, wanted, progress)

    async def run_once_dry(self) -> dict[str, list[tuple[str, str]]]:
        """``check --connect``: mint once per credential (nothing written) and read every target."""
        if not self.stores:
            self.setup()
        return await once.check_once(self.minter, self.config, self.credentials.values())

    # ------------------------------------------------------------------ stop

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Stop scheduling, let in-flight runs finish (bounded), close clients."""
        self._stopping = self.readbacks.stopping = True
        bound = self.config.daemon.drain_timeout if drain_timeout is None else drain_timeout
        # Pause, not shutdown: APScheduler's AsyncIOExecutor.shutdown() cancels running jobs,
        # which would cut every in-flight write short instead of letting it finish.
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.pause()
        running = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and drain.is_job_task(t)]
        if running:
            _, pending = await asyncio.wait(running, timeout=bound)
            if pending:
                await drain.abandon(pending, self.credentials.values(), self.clock(), bound)
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
        await drain.close_all(self.stores.values(), self._http_clients.owned())
        for st in self.credentials.values():
            st.state = "stopped" if st.state == "starting" else st.state

    # ------------------------------------------------------------------ views

    def status(self) -> dict[str, Any]:
        """/status: per credential state, never a token."""
        out = report.status(self.credentials.values(), self.clock(), self.started_at)
        credentials = out.pop("credentials")
        daemon = self.config.daemon
        return {**out, "replicas": daemon.replicas, "replica": daemon.replica or 0, "credentials": credentials}

    def credential_ready(self, st: CredentialState, now: float | None = None) -> bool:
        return report.credential_ready(st, self.clock() if now is None else now)

    def not_ready(self) -> list[dict[str, Any]]:
        """Every credential/target without an unexpired token (for /readyz)."""
        return report.not_ready(self.credentials.values(), self.clock())


def _batched(jobs: schedule.CredentialJobs | None) -> contextlib.AbstractContextManager[None]:
    return jobs.batched() if jobs is not None else contextlib.nullcontext()
