"""The loop per credential: mint -> write to every target -> schedule the next run.

One APScheduler job per credential, armed for the next run from ``syncd.policy``
after every run (``syncd.schedule`` owns the jobs, and a watchdog on the
heartbeat re-arms a credential left without one). A run is state-driven rather
than step-driven:

* mint only when the held token has reached its refresh time (or there is none),
  and the last mint attempt's backoff has passed;
* write the held token to every target that does not hold it yet and whose own
  backoff has passed. A target that failed is retried with the *same* token
  while it is valid, never with a fresh mint just for it;
* a failed mint keeps the last good token in every target, and a token is never
  written once it has expired.

At start-up each credential first reads its targets and adopts a stored token
that is still fresh, so restarting a daemon with 10,000 credentials does not
stampede the IdP.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Literal

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from syncd import identity, logs, policy, schedule, shutdown, verify
from syncd.client_auth import assertion_for, tls_files_version
from syncd.config import Config, CredentialConfig, SecretUnavailableError, StoreConfig, TargetConfig
from syncd.metrics import Metrics
from syncd.oauth import MintError, MintRequest, Token, TransientMintError, build_http_client, endpoint_origin, mint
from syncd.payload import TokenPayload, holds_token, to_rfc3339
from syncd.stores.base import Finding, Store, StoreError, TransientStoreError, WriteResult, create_store

log = logs.get_logger("syncd.engine")

RETAINED_TOKENS = 2  # replaced tokens per credential the log redactor still knows
CLOSE_TIMEOUT = 0.5  # bound on closing the stores (together), then the HTTP clients, at shutdown
ADOPT_REFUSALS = 2  # overwrites of an implausible token a store offers, before giving up (transient)

State = Literal["starting", "ok", "degraded", "retrying", "fatal", "expired", "stopped"]
Outcome = Literal["ok", "transient", "fatal"]
_LIVE_STATES = ("ok", "degraded", "retrying")


def _err(exc: BaseException) -> dict[str, Any]:
    """The error as /status shows it: class, vendor code, message. Never a secret."""
    out: dict[str, Any] = {"class": type(exc).__name__, "message": logs.scrub_text(str(exc))}
    for attr in ("status", "error", "code"):
        value = getattr(exc, attr, None)
        if value is not None:
            out[attr] = value
    kind = getattr(exc, "kind", None)
    out["kind"] = kind if kind in ("transient", "fatal") else "fatal"
    return out


@dataclass
class TargetState:
    cfg: TargetConfig
    store: Store
    stored_fingerprint: str | None = None
    stored_expires_at: float | None = None
    last_success: float | None = None
    failures: int = 0
    retry_at: float | None = None
    last_error: dict[str, Any] | None = None
    last_outcome: Outcome | None = None
    verify_at: float | None = None  # next read-back of the target between rotations
    missing: str | None = None  # why the last read-back did not find our token there
    missing_since: float | None = None

    @property
    def label(self) -> str:
        return self.cfg.label

    def holds(self, token: TokenPayload) -> bool:
        """Whether this target already has ``token`` with its expiry (see `holds_token`)."""
        return holds_token(self.stored_fingerprint, self.stored_expires_at, token)


@dataclass
class CredentialState:
    cfg: CredentialConfig
    policy: policy.RefreshPolicy
    lifetime_fallback: float
    targets: list[TargetState]
    max_lifetime: float = 86_400.0  # [defaults] max_lifetime
    verify_interval: verify.Interval = "auto"
    seen_lifetime: float | None = None  # the longest lifetime this process has minted for it
    token: TokenPayload | None = None
    state: State = "starting"
    mint_failures: int = 0
    consecutive_failures: int = 0
    mint_retry_at: float | None = None
    last_mint: float | None = None
    last_attempt: float | None = None
    minting_since: float | None = None  # a mint is in flight (shown on /status while it hangs)
    last_mint_outcome: Outcome | None = None
    last_error: dict[str, Any] | None = None
    next_run: float | None = None
    adopted: bool = False
    mints: int = 0
    running: bool = False
    verifying: bool = False  # a read-back of the targets is in progress (syncd.verify)
    vault_id: str | None = None
    generation: int = 0
    minted_with: str | None = None  # identity digest of the held token's mint (syncd.identity)
    rearmed: int = 0  # times the watchdog found the credential off the schedule
    last_rearmed: float | None = None
    retired: deque[str] = field(default_factory=deque)  # replaced token values, still redacted

    @property
    def name(self) -> str:
        return self.cfg.name


@dataclass
class RunReport:
    """What one ``once`` pass did for a credential."""

    credential: str
    ok: bool
    minted: bool
    errors: list[str] = field(default_factory=list)


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
        self._http = http_client
        self._own_http = http_client is None
        self._http_clients: dict[tuple[Any, ...], httpx.AsyncClient] = {}
        self.stores: dict[str, Store] = {}
        self._store_configs: dict[str, StoreConfig] = {}
        self.credentials: dict[str, CredentialState] = {}
        self.scheduler: AsyncIOScheduler | None = None
        self.jobs: schedule.CredentialJobs | None = None
        self.watchdog_grace = schedule.WATCHDOG_GRACE
        self._host_sems: dict[str, tuple[int, asyncio.Semaphore]] = {}
        self._stopping = False
        self.started_at = clock()
        self.loop_heartbeat = clock()
        self.scheduler_heartbeat = clock()
        self._heartbeat_task: asyncio.Task[None] | None = None

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
        return CredentialState(
            cfg=cfg,
            policy=cfg.policy(self.config.defaults),
            lifetime_fallback=cfg.lifetime_fallback_for(self.config.defaults),
            max_lifetime=cfg.max_lifetime_for(self.config.defaults),
            verify_interval=cfg.verify_interval_for(self.config.defaults),
            targets=[TargetState(cfg=t, store=stores[t.store]) for t in cfg.targets],
        )

    def http_client(self, cfg: CredentialConfig) -> httpx.AsyncClient:
        """One pooled client per token endpoint origin and TLS setting.

        Per origin because httpx's connection limit is per client: one client shared by
        every IdP would let connections stuck on a hanging IdP fill the pool for all.
        """
        if self._http is not None:
            return self._http
        # The files' versions are part of the key: a rotated certificate (cert-manager) gets a fresh
        # pool; the old one is closed at stop (rotations are rare, in-flight mints may still use it).
        tls_version = tls_files_version(cfg.client_cert, cfg.client_key, cfg.ca_bundle)
        key = (endpoint_origin(cfg.token_url), cfg.ca_bundle, cfg.client_cert, cfg.client_key, tls_version)
        client = self._http_clients.get(key)
        if client is None:
            d = self.config.daemon
            client = build_http_client(
                timeout=d.http_timeout,
                connect_timeout=d.connect_timeout,
                ca_bundle=str(cfg.ca_bundle) if cfg.ca_bundle else None,
                client_cert=str(cfg.client_cert) if cfg.client_cert else None,
                client_key=str(cfg.client_key) if cfg.client_key else None,
                max_connections=d.max_concurrent_mints,
            )
            self._http_clients[key] = client
        return client

    def setup(self) -> None:
        """Create stores and credential states (no I/O yet)."""
        self.stores = self._build_stores(self.config)
        self._store_configs = dict(self.config.stores)
        for cfg in self.config.credentials:
            self.credentials[cfg.name] = self._new_state(cfg, self.stores)
        for st in self.credentials.values():
            self._publish(st)

    def plan(self) -> list[Finding]:
        """Quota/cost findings for every target (``syncd check`` and start-up)."""
        return plan_findings(self.config, self.stores)

    # ------------------------------------------------------------------ minting

    def _host_semaphore(self, token_url: str) -> asyncio.Semaphore:
        """The bound on mints in flight to one token endpoint origin (``max_concurrent_mints``).

        Created on first use; a reload that changes the bound gives the origin a new
        semaphore, and mints still holding the old one finish against the old bound.
        """
        origin = endpoint_origin(token_url)
        limit = self.config.daemon.max_concurrent_mints
        known = self._host_sems.get(origin)
        if known is None or known[0] != limit:
            known = (limit, asyncio.Semaphore(limit))
            self._host_sems[origin] = known
        return known[1]

    def _mint_timeout(self, st: CredentialState) -> float:
        # The quarter-lifetime clamp protects the margin of a token being served. With none
        # valid there is nothing to protect, and clamping would leave a slow IdP (1 s answers,
        # 3 s tokens) unable to issue any token at all.
        token = st.token
        life = token.lifetime if token is not None and not token.expired(self.clock()) else None
        return policy.effective_mint_timeout(self.config.daemon.mint_timeout, life)

    async def _mint(self, st: CredentialState) -> TokenPayload:
        cfg = st.cfg
        client_id, secret, scopes, vault_id = cfg.resolve_identity()
        logs.register_secret(secret.get_secret_value())
        st.vault_id = vault_id
        req = MintRequest(
            credential=cfg.name,
            token_url=cfg.token_url,
            client_id=client_id,
            client_secret=secret,
            auth_method=cfg.auth_method,
            scopes=scopes,
            extra_params=dict(cfg.extra_params),
            lifetime_fallback=st.lifetime_fallback,
            mint_timeout=self._mint_timeout(st),
        )
        assert req.mint_timeout is not None
        # One deadline for the wait for a slot and the exchange: a mint queued behind stuck
        # ones fails when its time is up, so /status shows the trouble while it lasts.
        deadline = asyncio.get_running_loop().time() + req.mint_timeout
        sem = self._host_semaphore(cfg.token_url)
        try:
            async with asyncio.timeout_at(deadline):
                await sem.acquire()
        except TimeoutError:
            queued = True
        else:
            queued = False
        if queued:
            raise TransientMintError(
                f"credential {cfg.name!r}: the IdP did not answer within mint_timeout={req.mint_timeout:g}s: "
                f"all {self.config.daemon.max_concurrent_mints} mint slots for {endpoint_origin(cfg.token_url)} "
                "(max_concurrent_mints) are held by requests it has not answered; will retry with backoff",
                credential=cfg.name,
            )
        # Signed once a slot is free: a queued mint must not send an assertion that aged while waiting.
        try:
            assertion = assertion_for(cfg, client_id, secret, self.clock())
        except BaseException:
            sem.release()
            raise
        if assertion is not None:
            logs.register_secret(assertion.get_secret_value())
            req = dataclasses.replace(req, client_assertion=assertion)
        started = time.perf_counter()
        try:
            token = await mint(self.http_client(cfg), req, clock=self.clock, deadline=deadline)
        finally:
            sem.release()
            self.metrics.mint_duration.observe(time.perf_counter() - started)
            if assertion is not None:
                # Registered only while it is in flight: an assertion is a new value every mint (or every
                # kubelet rotation), so keeping each one would grow the scan set without bound; the mint's
                # own redactor covers an IdP echoing it back.
                logs.forget_secret(assertion.get_secret_value())
        logs.register_secret(token.access_token.get_secret_value())
        return self._payload(st, token)

    def _payload(self, st: CredentialState, token: Token) -> TokenPayload:
        now = self.clock()
        # What the IdP really issues bounds what a foreign payload may claim (policy.implausible).
        st.seen_lifetime = max(st.seen_lifetime or 0.0, token.expires_at - token.issued_at)
        refresh = policy.refresh_time(token.issued_at, token.expires_at, now, st.policy, self.rng.random())
        return TokenPayload(
            credential=st.name,
            access_token=token.access_token,
            issued_at=token.issued_at,
            expires_at=token.expires_at,
            refresh_after=refresh,
            token_type=token.token_type,
            scope=token.scope,
            fingerprint=token.fingerprint,
        )

    def _implausible(self, st: CredentialState, payload: TokenPayload) -> str | None:
        return policy.implausible(
            payload,
            credential=st.name,
            now=self.clock(),
            max_lifetime=st.max_lifetime,
            seen_lifetime=st.seen_lifetime,
        )

    def _rebase(self, st: CredentialState, payload: TokenPayload) -> TokenPayload:
        """Adopt a token another writer stored: our own jittered refresh time for it."""
        now = self.clock()
        refresh = policy.refresh_time(payload.issued_at, payload.expires_at, now, st.policy, self.rng.random())
        logs.register_secret(payload.access_token.get_secret_value())
        return TokenPayload(
            credential=payload.credential,
            access_token=payload.access_token,
            issued_at=payload.issued_at,
            expires_at=payload.expires_at,
            refresh_after=refresh,
            token_type=payload.token_type,
            scope=payload.scope,
            fingerprint=payload.fingerprint,
        )

    def _set_token(self, st: CredentialState, payload: TokenPayload) -> None:
        old = st.token
        st.token = payload
        # The redactor must keep recognising a replaced token while a slow library may still
        # log it, but not forever (67 rotations/s would grow it by millions a day): keep the
        # last RETAINED_TOKENS replaced ones per credential, by then long expired.
        if old is not None and old.fingerprint != payload.fingerprint:
            st.retired.append(old.access_token.get_secret_value())
            while len(st.retired) > RETAINED_TOKENS:
                logs.forget_secret(st.retired.popleft())

    # ------------------------------------------------------------------ writing

    async def _write_target(self, st: CredentialState, ts: TargetState, payload: TokenPayload) -> TokenPayload | None:
        """Write one target; returns a fresher token the store holds from another writer, if any."""
        started = time.perf_counter()
        now = self.clock()
        try:
            result = await self._write_refusing_implausible(st, ts, payload)
        except Exception as exc:
            duration = time.perf_counter() - started
            self.metrics.write_duration.labels(store=ts.store.name).observe(duration)
            serr = exc if isinstance(exc, StoreError) else TransientStoreError(f"{type(exc).__name__}: {exc}")
            outcome: Outcome = "transient" if serr.transient else "fatal"
            ts.failures += 1
            ts.last_outcome = outcome
            ts.last_error = _err(serr)
            if serr.transient:
                delay = policy.backoff_delay(ts.failures - 1, st.policy, self.rng.random(), serr.retry_after)
            else:
                delay = policy.fatal_delay(st.policy, self.rng.random())
            ts.retry_at = now + delay
            self.metrics.writes.labels(credential=st.name, target=ts.label, outcome=outcome).inc()
            log.warning(
                "write",
                credential=st.name,
                target=ts.label,
                fingerprint=payload.fingerprint,
                expires_at=to_rfc3339(payload.expires_at),
                duration=round(duration, 4),
                outcome=outcome,
                retry_in=round(delay, 3),
                failures=ts.failures,
                **logs.error_fields(serr),
            )
            return None
        duration = time.perf_counter() - started
        self.metrics.write_duration.labels(store=ts.store.name).observe(duration)
        if result.adopted is not None and result.adopted.expires_at > payload.expires_at:
            adopted = result.adopted
            ts.stored_fingerprint, ts.stored_expires_at = adopted.fingerprint, adopted.expires_at
        else:
            adopted = None
            ts.stored_fingerprint, ts.stored_expires_at = payload.fingerprint, payload.expires_at
        ts.failures, ts.retry_at, ts.last_error, ts.last_outcome = 0, None, None, "ok"
        ts.last_success = self.clock()
        self._verified(st, ts, payload, ts.last_success)
        self.metrics.writes.labels(credential=st.name, target=ts.label, outcome="ok").inc()
        self.metrics.target_last_success.labels(credential=st.name, target=ts.label).set(ts.last_success)
        self.metrics.target_token_expiry.labels(credential=st.name, target=ts.label).set(ts.stored_expires_at)
        log.info(
            "write",
            credential=st.name,
            target=ts.label,
            fingerprint=ts.stored_fingerprint,
            expires_at=to_rfc3339(ts.stored_expires_at),
            duration=round(duration, 4),
            outcome="ok",
            written=result.written,
            version=result.version,
            adopted=adopted is not None,
        )
        return adopted

    async def _write_refusing_implausible(
        self, st: CredentialState, ts: TargetState, payload: TokenPayload
    ) -> WriteResult:
        """Write; a token the store offers instead (``WriteResult.adopted``) is taken only if plausible.

        An implausible one (policy.implausible: a planted 10-year token, another credential's)
        is overwritten: after offering it, the store knows the path's current version, so the
        same write again replaces it. A writer that keeps planting is a transient failure.
        """
        result = await ts.store.write(ts.cfg.key, payload, target=ts.cfg)
        for _ in range(ADOPT_REFUSALS):
            offered = result.adopted
            reason = self._implausible(st, offered) if offered is not None else None
            if offered is None or reason is None:
                return result
            log.warning(
                "adopt_refused",
                credential=st.name,
                target=ts.label,
                stored_fingerprint=offered.fingerprint,
                reason=reason,
                action="overwrite",
            )
            result = await ts.store.write(ts.cfg.key, payload, target=ts.cfg)
        still = self._implausible(st, result.adopted) if result.adopted is not None else None
        if still is not None:
            raise TransientStoreError(
                f"{ts.label}: another writer keeps storing a token syncd refuses to adopt ({still}); "
                "find and stop that writer",
                code="implausible_payload",
            )
        return result

    async def _write_pending(self, st: CredentialState, *, force: bool = False) -> None:
        for _ in range(2):  # a second pass spreads a token adopted from another writer
            token = st.token
            now = self.clock()
            if token is None or token.expired(now):
                return
            pending = [
                ts for ts in st.targets if not ts.holds(token) and (force or ts.retry_at is None or now >= ts.retry_at)
            ]
            if not pending:
                return
            results = await asyncio.gather(*(self._write_target(st, ts, token) for ts in pending))
            fresher = [p for p in results if p is not None]
            if not fresher:
                return
            best = max(fresher, key=lambda p: p.expires_at)
            if st.token is not None and best.expires_at > st.token.expires_at:
                log.info("adopted", credential=st.name, fingerprint=best.fingerprint, reason="another writer")
                self._set_token(st, self._rebase(st, best))

    # ------------------------------------------------------------------ verification

    def _verified(self, st: CredentialState, ts: TargetState, payload: TokenPayload, at: float) -> None:
        """The target holds ``payload`` as of ``at``: plan its next read-back, end a "missing" episode."""
        refresh = st.token.refresh_after if st.token is not None else payload.refresh_after
        ts.verify_at = verify.next_verify(at, refresh, st.verify_interval)
        if ts.missing is not None:
            since = ts.missing_since if ts.missing_since is not None else at
            log.info("target_restored", credential=st.name, target=ts.label, missing_for=round(at - since, 3))
            ts.missing = ts.missing_since = None
        self._schedule_verify(st)

    def _schedule_verify(self, st: CredentialState) -> None:
        """A job of its own (``verify:<name>``): the credential's run schedule and next_refresh stay the refresh's."""
        due = [ts.verify_at for ts in st.targets if ts.verify_at is not None]
        if self.scheduler is None or self._stopping or not due:
            return
        # The job re-arms itself as its last step; st.verifying keeps the reads serial.
        schedule.arm(self.scheduler, f"verify:{st.name}", self._verify_job, [st.name], min(due))

    async def _verify_job(self, name: str) -> None:
        st = self.credentials.get(name)
        if st is None or self._stopping or st.verifying:
            return  # an instance in progress re-adds the job when it is done
        if st.running:  # a run is writing: read back a little later, not in the middle of it
            for ts in st.targets:
                if ts.verify_at is not None:
                    ts.verify_at = max(ts.verify_at, self.clock() + verify.MIN_VERIFY_GAP)
        else:
            st.verifying = True
            try:
                lost = await self._verify_targets(st)
            finally:
                st.verifying = False
            if lost and not st.running and self.credentials.get(name) is st:
                self._schedule(st)  # a target lost its token: the run writes it again now
        self._schedule_verify(st)

    async def _verify_targets(self, st: CredentialState) -> bool:
        """Read back the targets whose check is due; True when one was found without its token."""
        token = st.token
        now = self.clock()
        if token is None or token.expired(now):
            return False
        due = [
            ts
            for ts in st.targets
            if ts.verify_at is not None and now >= ts.verify_at and ts.stored_fingerprint == token.fingerprint
        ]
        if not due:
            return False
        found = await asyncio.gather(*(self._verify_target(st, ts, token) for ts in due))
        return any(found)

    async def _verify_target(self, st: CredentialState, ts: TargetState, token: TokenPayload) -> bool:
        ts.verify_at = None
        try:
            reason = await verify.target_problem(
                ts.store, ts.cfg.key, ts.cfg, token, lambda p: self._implausible(st, p)
            )
        except Exception as exc:
            reason = verify.lost_by_error(exc)
            if reason is None:
                # Unknown is not missing: the store is unreachable, which the next write will tell.
                log.warning("verify_read", credential=st.name, target=ts.label, **logs.error_fields(exc))
                ts.verify_at = verify.next_verify(self.clock(), token.refresh_after, st.verify_interval)
                return False
        now = self.clock()
        if ts.stored_fingerprint != token.fingerprint:
            return False  # a run wrote (or failed) meanwhile: what was read is already out of date
        if reason is None:
            ts.verify_at = verify.next_verify(now, token.refresh_after, st.verify_interval)
            return False
        ts.missing, ts.missing_since = reason, now
        ts.stored_fingerprint, ts.stored_expires_at, ts.retry_at = None, None, None
        log.warning(
            "target_missing",
            credential=st.name,
            target=ts.label,
            fingerprint=token.fingerprint,
            reason=reason,
            action="rewrite",
        )
        return True

    # ------------------------------------------------------------------ the run

    async def run_credential(self, name: str, planned: float | None = None, *, force_mint: bool = False) -> None:
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
            await self._run(st, force_mint=force_mint)
        finally:
            st.running = False
            if not self._stopping and self.credentials.get(name) is st and st.generation == generation:
                self._schedule(st)
            elif name not in self.credentials:  # removed by a reload while it ran: no ghost series
                self.metrics.forget_credential(name, [ts.label for ts in st.targets])

    async def _run(self, st: CredentialState, *, force_mint: bool = False) -> None:
        now = self.clock()
        token = st.token
        due = force_mint or token is None or now >= token.refresh_after or token.expired(now)
        if due and (force_mint or st.mint_retry_at is None or now >= st.mint_retry_at):
            minting_as = identity.digest(st.cfg)
            if await self._attempt_mint(st):
                st.minted_with = minting_as
        await self._write_pending(st)
        self._update_state(st)
        self._publish(st)

    async def _attempt_mint(self, st: CredentialState) -> bool:
        started = self.clock()
        st.last_attempt = started
        st.minting_since = started
        try:
            payload = await self._mint(st)
        except Exception as exc:
            now = self.clock()
            # MintError says what it is; a missing secret or a bad request is a credential
            # problem (fatal pace); anything unexpected is retried with backoff.
            known = (MintError, SecretUnavailableError, ValueError)
            transient = isinstance(exc, TransientMintError) or not isinstance(exc, known)
            outcome: Outcome = "transient" if transient else "fatal"
            st.mint_failures += 1
            st.last_mint_outcome = outcome
            st.last_error = _err(exc)
            st.last_error["kind"] = outcome
            retry_after = getattr(exc, "retry_after", None)
            if transient:
                delay = self._transient_delay(st, now, retry_after)
            else:
                delay = policy.fatal_delay(st.policy, self.rng.random())
            st.mint_retry_at = now + delay
            self.metrics.mints.labels(credential=st.name, outcome=outcome).inc()
            still_valid = st.token is not None and not st.token.expired(now)
            log.error(
                "mint",
                credential=st.name,
                outcome=outcome,
                duration=round(now - started, 4),
                retry_in=round(delay, 3),
                failures=st.mint_failures,
                serving_last_good=still_valid,
                **logs.error_fields(exc),
            )
            return False
        finally:
            # Also when the run is cancelled (drain_timeout): /status must not show a mint in flight.
            st.minting_since = None
        now = self.clock()
        held = st.token if st.token is not None and not st.token.expired(now) else None
        verdict = policy.judge_minted(
            payload.expires_at,
            now,
            st.policy,
            expected_lifetime=st.cfg.token_lifetime_for(self.config.defaults),
            held_expires_at=held.expires_at if held is not None else None,
        )
        if verdict != "fresh":
            return self._minted_short(st, payload, verdict, now)
        st.mints += 1
        st.mint_failures, st.mint_retry_at = 0, None
        st.last_mint, st.last_mint_outcome, st.adopted = now, "ok", False
        self._set_token(st, payload)
        self.metrics.mints.labels(credential=st.name, outcome="ok").inc()
        log.info(
            "mint",
            credential=st.name,
            outcome="ok",
            fingerprint=payload.fingerprint,
            expires_at=to_rfc3339(payload.expires_at),
            refresh_after=to_rfc3339(payload.refresh_after),
            lifetime=round(payload.lifetime, 3),
            duration=round(now - started, 4),
        )
        return True

    def _transient_delay(self, st: CredentialState, now: float, retry_after: float | None) -> float:
        """Backoff for a transient mint failure; a Retry-After never outlives the token held."""
        held = (st.token.issued_at, st.token.expires_at) if st.token is not None else None
        plan = policy.transient_retry(
            st.mint_failures - 1, st.policy, self.rng.random(), now=now, retry_after=retry_after, held=held
        )
        if plan.capped and plan.asked is not None:
            log.warning(
                "retry_after_capped",
                credential=st.name,
                asked=round(plan.asked, 3),
                used=round(plan.delay, 3),
                token_expires_at=to_rfc3339(st.token.expires_at) if st.token is not None else None,
                min_remaining=st.policy.min_remaining,
            )
        return plan.delay

    def _minted_short(self, st: CredentialState, payload: TokenPayload, verdict: str, now: float) -> bool:
        """A token that cannot be served for ``min_remaining`` (or is older than the one held).

        Minting again at once would get the same answer from a caching IdP, so the next
        mint backs off like a transient failure; the token is still used when it is the
        freshest there is. Returns whether it was taken.
        """
        held = st.token
        take = verdict == "short" and not payload.expired(now)
        serving = payload if take or held is None else held
        st.mint_failures += 1
        st.last_mint_outcome = "transient"
        delay = policy.short_token_delay(st.mint_failures - 1, st.policy, self.rng.random(), serving.expires_at - now)
        st.mint_retry_at = now + delay
        left = payload.expires_at - now
        why = (
            f"with {max(left, 0.0):.1f}s left, less than min_remaining={st.policy.min_remaining:g}s"
            if verdict == "short"
            else "that expires before the token already held"
        )
        st.last_error = {
            "class": "ShortLivedToken",
            "kind": "transient",
            "message": (
                f"credential {st.name!r}: the IdP issued a token {why} (a caching IdP, or token_lifetime/"
                f"min_remaining do not match the IdP's tokens); {'serving it and ' if take else ''}"
                "minting again with backoff"
            ),
        }
        self.metrics.mints.labels(credential=st.name, outcome="transient").inc()
        log.warning(
            "mint_short",
            credential=st.name,
            verdict=verdict,
            fingerprint=payload.fingerprint,
            expires_at=to_rfc3339(payload.expires_at),
            expires_in=round(left, 3),
            min_remaining=st.policy.min_remaining,
            used=take,
            retry_in=round(delay, 3),
            failures=st.mint_failures,
        )
        if take:
            st.mints += 1
            st.last_mint, st.adopted = now, False
            self._set_token(st, payload)
        return take

    def _update_state(self, st: CredentialState) -> None:
        now = self.clock()
        token = st.token
        failing_targets = [ts for ts in st.targets if ts.failures]
        if st.mint_failures == 0 and not failing_targets:
            st.consecutive_failures = 0
            st.last_error = None
        else:
            st.consecutive_failures = max(st.mint_failures, max((ts.failures for ts in st.targets), default=0))
            if st.mint_failures == 0 and failing_targets:
                st.last_error = failing_targets[0].last_error
        if token is None or token.expired(now):
            st.state = "fatal" if st.last_mint_outcome == "fatal" else ("expired" if token else "retrying")
        elif st.mint_failures:
            st.state = "fatal" if st.last_mint_outcome == "fatal" else "retrying"
        elif any(ts.last_outcome == "fatal" for ts in failing_targets):
            st.state = "fatal"
        elif failing_targets:
            st.state = "degraded"
        else:
            st.state = "ok"

    def _next_run(self, st: CredentialState) -> float:
        now = self.clock()
        token = st.token
        candidates: list[float] = []
        if token is None or now >= token.refresh_after or token.expired(now):
            due = st.mint_retry_at if st.mint_retry_at is not None else now
            # A token that is due (or expired) as soon as it is minted must not turn into a
            # hot loop against the IdP: min_interval between two mint attempts, always.
            if st.last_attempt is not None:
                due = max(due, st.last_attempt + st.policy.min_interval)
            candidates.append(due)
        else:
            candidates.append(token.refresh_after)
        if token is not None and not token.expired(now):
            for ts in st.targets:
                if not ts.holds(token):
                    candidates.append(ts.retry_at if ts.retry_at is not None else now)
        # Never busy-loop: even "now" is at least a few milliseconds away.
        return max(min(candidates), now + 0.005)

    def _schedule(self, st: CredentialState, at: float | None = None) -> None:
        when = at if at is not None else self._next_run(st)
        st.next_run = when
        self.metrics.next_refresh.labels(credential=st.name).set(when)
        if self.jobs is not None:
            self.jobs.arm(st.name, when)

    def _publish(self, st: CredentialState) -> None:
        m = self.metrics
        m.consecutive_failures.labels(credential=st.name).set(st.consecutive_failures)
        if st.token is not None:
            m.token_expiry.labels(credential=st.name).set(st.token.expires_at)
            m.token_lifetime.labels(credential=st.name).set(st.token.lifetime)
        for ts in st.targets:
            if ts.stored_expires_at is not None:
                m.target_token_expiry.labels(credential=st.name, target=ts.label).set(ts.stored_expires_at)
            if ts.last_success is not None:  # also a token adopted at start-up (a verified read)
                m.target_last_success.labels(credential=st.name, target=ts.label).set(ts.last_success)

    # ------------------------------------------------------------------ start-up adoption

    async def _adopt(self, st: CredentialState, sem: asyncio.Semaphore) -> None:
        async def read(ts: TargetState) -> TokenPayload | None:
            async with sem:
                try:
                    return await ts.store.read(ts.cfg.key, target=ts.cfg)
                except Exception as exc:
                    log.warning("adopt_read", credential=st.name, target=ts.label, **logs.error_fields(exc))
                    return None

        payloads = await asyncio.gather(*(read(ts) for ts in st.targets))
        now = self.clock()
        candidates: list[TokenPayload] = []
        for ts, payload in zip(st.targets, payloads, strict=True):
            if payload is None:
                continue
            if payload.credential != st.name:
                log.warning(
                    "adopt_foreign",
                    credential=st.name,
                    target=ts.label,
                    stored_credential=payload.credential,
                    action="will overwrite",
                )
                continue
            reason = self._implausible(st, payload)
            if reason is not None:
                # Never served, never copied to the other targets: the first mint overwrites it.
                log.warning(
                    "adopt_refused",
                    credential=st.name,
                    target=ts.label,
                    stored_fingerprint=payload.fingerprint,
                    reason=reason,
                    action="will overwrite",
                )
                continue
            if not payload.expired(now):
                ts.stored_fingerprint, ts.stored_expires_at = payload.fingerprint, payload.expires_at
                ts.last_success = now
                candidates.append(payload)
        if not candidates:
            return
        best = max(candidates, key=lambda p: p.expires_at)
        if policy.is_fresh(best.issued_at, best.expires_at, now, st.policy):
            self._set_token(st, self._rebase(st, best))
            for ts in st.targets:
                if ts.stored_fingerprint == best.fingerprint:
                    self._verified(st, ts, best, now)
            st.adopted = True
            st.state = "ok"
            log.info(
                "adopted",
                credential=st.name,
                fingerprint=best.fingerprint,
                expires_at=to_rfc3339(best.expires_at),
                targets_holding=sum(1 for ts in st.targets if ts.stored_fingerprint == best.fingerprint),
                reason="fresh token in store",
            )
        else:
            # Still valid but due: keep serving it while the first mint is attempted.
            self._set_token(st, self._rebase(st, best))

    async def start(self) -> None:
        """Adopt stored tokens, then schedule every credential. Call inside the running loop."""
        if not self.stores:
            self.setup()
        self.scheduler = AsyncIOScheduler(timezone=UTC, job_defaults={"misfire_grace_time": None, "coalesce": True})
        self.scheduler.start()
        self.jobs = schedule.CredentialJobs(self.scheduler, self.run_credential)
        self.scheduler.add_job(self._beat, "interval", seconds=1, id="syncd:heartbeat", max_instances=1)
        self._heartbeat_task = asyncio.get_running_loop().create_task(self._loop_beat())
        await self._start_credentials(list(self.credentials.values()))

    async def _start_credentials(self, states: list[CredentialState], remint: Iterable[str] = ()) -> None:
        """Adopt what the targets hold, then schedule; a credential in ``remint`` mints at once."""
        sem = asyncio.Semaphore(self.config.daemon.startup_concurrency)
        await asyncio.gather(*(self._adopt(st, sem) for st in states))
        now = self.clock()
        remint = set(remint)
        adopted = 0
        for st in states:
            if st.name in remint and st.token is not None:
                # Still served (the targets hold it) until the new identity's token replaces it,
                # but due now, whatever the targets' copy says.
                self._set_token(st, dataclasses.replace(st.token, refresh_after=min(st.token.refresh_after, now)))
                st.adopted = False
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
        """Re-arm every credential that has fallen off the schedule (see syncd.schedule)."""
        if self.jobs is None or self._stopping:
            return
        now = self.clock()
        plans = ((st.name, st.next_run, st.running) for st in self.credentials.values())
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

    # ------------------------------------------------------------------ reload

    async def reload(self, new: Config) -> dict[str, list[str]]:
        """Apply a new configuration: added credentials start, removed stop, changed restart."""
        old_stores = self.stores
        stores = self._build_stores(new, reuse=old_stores)
        changed_stores = {n for n in new.stores if stores[n] is not old_stores.get(n)}
        self.config = new
        summary: dict[str, list[str]] = {"added": [], "removed": [], "changed": [], "unchanged": [], "reminted": []}
        new_names = {c.name for c in new.credentials}
        # A changed secret value hides behind an unchanged reference: read the sources (off the loop).
        known = [c for c in new.credentials if (o := self.credentials.get(c.name)) is not None and o.minted_with]
        current = await asyncio.to_thread(lambda: {c.name: identity.digest(c) for c in known})
        for name in list(self.credentials):
            if name not in new_names:
                st = self.credentials.pop(name)
                st.generation += 1
                self._remove_job(name)
                self.metrics.forget_credential(name, [ts.label for ts in st.targets])
                for value in (*st.retired, *([st.token.access_token.get_secret_value()] if st.token else [])):
                    logs.forget_secret(value)
                summary["removed"].append(name)
        to_start: list[CredentialState] = []
        for cfg in new.credentials:
            old = self.credentials.get(cfg.name)
            uses_changed = any(t.store in changed_stores for t in cfg.targets)
            reasons = identity.remint_reasons(old.cfg, cfg, old.minted_with, current.get(cfg.name)) if old else []
            if (
                old is not None
                and not reasons
                and old.cfg == cfg
                and not uses_changed
                and old.policy == cfg.policy(new.defaults)
            ):
                summary["unchanged"].append(cfg.name)
                continue
            st = self._new_state(cfg, stores)
            if old is not None:
                old.generation += 1
                self._remove_job(cfg.name)
                st.token, st.minted_with, st.retired = old.token, old.minted_with, old.retired
                if reasons:
                    summary["reminted"].append(cfg.name)
                    log.info("identity_changed", credential=cfg.name, changed=reasons, action="minting a new token now")
                summary["changed"].append(cfg.name)
                self.metrics.forget_credential(cfg.name, [ts.label for ts in old.targets])
            else:
                summary["added"].append(cfg.name)
            self.credentials[cfg.name] = st
            to_start.append(st)
        self.stores = stores
        self._store_configs = dict(new.stores)
        for name, store in old_stores.items():
            if store is not stores.get(name):
                with contextlib.suppress(Exception):
                    await store.aclose()
        if to_start:
            await self._start_credentials(to_start, remint=summary["reminted"])
        log.info(
            "reloaded", **{k: v for k, v in summary.items() if k != "unchanged"}, unchanged=len(summary["unchanged"])
        )
        return summary

    def _remove_job(self, name: str) -> None:
        if self.jobs is not None:
            self.jobs.cancel(name)

    # ------------------------------------------------------------------ once

    async def run_once(
        self, names: Iterable[str] | None = None, progress: Callable[[RunReport], None] | None = None
    ) -> list[RunReport]:
        """Mint and write every (or the named) credential once, without a scheduler."""
        if not self.stores:
            self.setup()
        wanted = list(names) if names is not None else list(self.credentials)

        async def one(name: str) -> RunReport:
            st = self.credentials[name]
            minted = await self._attempt_mint(st)
            if minted:
                await self._write_pending(st, force=True)
            self._update_state(st)
            errors = []
            if not minted and st.last_error:
                errors.append(f"mint: {st.last_error['message']}")
            for ts in st.targets:
                if minted and (st.token is None or not ts.holds(st.token)):
                    msg = ts.last_error["message"] if ts.last_error else "not written"
                    errors.append(f"{ts.label}: {msg}")
            report = RunReport(name, ok=minted and not errors, minted=minted, errors=errors)
            if progress:
                progress(report)
            return report

        return list(await asyncio.gather(*(one(n) for n in wanted)))

    async def run_once_dry(self) -> dict[str, list[tuple[str, str]]]:
        """``check --connect``: mint once per credential (nothing written) and read every target."""
        if not self.stores:
            self.setup()

        async def one(st: CredentialState) -> tuple[str, list[tuple[str, str]]]:
            problems: list[tuple[str, str]] = []
            try:
                payload = await self._mint(st)
                life = payload.lifetime
                expected = st.cfg.token_lifetime_for(self.config.defaults)
                if abs(life - expected) > max(5.0, expected * 0.1):
                    problems.append(
                        (
                            "token_lifetime",
                            f"the IdP issued a {life:.0f}s token but the plan assumes {expected:.0f}s: "
                            f'set token_lifetime = "{life:.0f}s" so quota checks use the real cadence',
                        )
                    )
            except (MintError, SecretUnavailableError, ValueError) as exc:
                problems.append(("mint", _err(exc)["message"]))
            except Exception as exc:
                # A check reports what it found; an unclassified failure (a CA bundle that
                # cannot be loaded, say) is one more finding, not a traceback.
                problems.append(("mint", f"{type(exc).__name__}: {_err(exc)['message']}"))
            for ts in st.targets:
                try:
                    await ts.store.read(ts.cfg.key, target=ts.cfg)
                except Exception as exc:
                    problems.append((ts.label, f"read failed: {_err(exc)['message']}"))
            return st.name, problems

        return dict(await asyncio.gather(*(one(st) for st in self.credentials.values())))

    # ------------------------------------------------------------------ stop

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Stop scheduling, let in-flight runs finish (bounded), close clients."""
        self._stopping = True
        bound = self.config.daemon.drain_timeout if drain_timeout is None else drain_timeout
        # Pause, not shutdown: APScheduler's AsyncIOExecutor.shutdown() cancels running jobs,
        # which would cut every in-flight write short instead of letting it finish.
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.pause()
        running = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and _is_job_task(t)]
        if running:
            _, pending = await asyncio.wait(running, timeout=bound)
            if pending:
                cut = [st for st in self.credentials.values() if st.running]
                log.warning(
                    "drain_timeout", unfinished=len(pending), credentials=sorted(st.name for st in cut), bound=bound
                )
                now = self.clock()
                for st in cut:
                    for ts in shutdown.unwritten_targets(st.token, st.targets, now):
                        log.warning(
                            "write_abandoned",
                            credential=st.name,
                            target=ts.label,
                            store=ts.store.name,
                            fingerprint=st.token.fingerprint if st.token else None,
                            reason=f"not finished within drain_timeout ({bound:g}s); the target keeps what it held",
                        )
                # The cancelled jobs' tracebacks would only repeat this event.
                quiet = logging.getLogger("apscheduler.executors")
                level = quiet.level
                quiet.setLevel(logging.CRITICAL)
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=1.0)
                quiet.setLevel(level)
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
        # Bounded: a store whose call hangs (a stopped server, a stuck SDK thread) must not
        # hold the exit; what it leaves behind is the daemon's to abandon (syncd.daemon).
        await asyncio.gather(*(self._close_store(store) for store in self.stores.values()))
        clients = [*self._http_clients.values(), *([self._http] if self._http is not None and self._own_http else [])]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*(c.aclose() for c in clients)), CLOSE_TIMEOUT)
        for st in self.credentials.values():
            st.state = "stopped" if st.state == "starting" else st.state

    async def _close_store(self, store: Store) -> None:
        try:
            await asyncio.wait_for(store.aclose(), CLOSE_TIMEOUT)
        except TimeoutError:
            log.warning("store_close", store=store.name, error=f"not closed within {CLOSE_TIMEOUT:g}s; abandoned")
        except Exception as exc:
            log.warning("store_close", store=store.name, **logs.error_fields(exc))

    # ------------------------------------------------------------------ views

    def status(self) -> dict[str, Any]:
        """/status: per credential state, never a token."""
        now = self.clock()
        creds = []
        for st in self.credentials.values():
            tok = st.token
            creds.append(
                {
                    "name": st.name,
                    # the state is set after each run; an expiry between two runs shows at once
                    "state": "expired" if tok and tok.expired(now) and st.state in _LIVE_STATES else st.state,
                    "healthy": self.credential_ready(st, now),
                    "token_url": st.cfg.token_url,
                    "fingerprint": tok.fingerprint if tok else None,
                    "issued_at": to_rfc3339(tok.issued_at) if tok else None,
                    "expires_at": to_rfc3339(tok.expires_at) if tok else None,
                    "expires_in": round(tok.expires_at - now, 3) if tok else None,
                    "refresh_after": to_rfc3339(tok.refresh_after) if tok else None,
                    "last_mint": to_rfc3339(st.last_mint) if st.last_mint else None,
                    "minting_since": to_rfc3339(st.minting_since) if st.minting_since else None,
                    "adopted": st.adopted,
                    "next_refresh": to_rfc3339(st.next_run) if st.next_run else None,
                    "rearmed": st.rearmed,
                    "last_rearmed": to_rfc3339(st.last_rearmed) if st.last_rearmed else None,
                    "consecutive_failures": st.consecutive_failures,
                    "last_error": st.last_error,
                    "targets": [
                        {
                            "target": ts.label,
                            "store": ts.cfg.store,
                            "key": ts.cfg.key,
                            "fingerprint": ts.stored_fingerprint,
                            "stored_expires_at": to_rfc3339(ts.stored_expires_at) if ts.stored_expires_at else None,
                            "last_success": to_rfc3339(ts.last_success) if ts.last_success else None,
                            "failures": ts.failures,
                            "last_error": ts.last_error,
                            "fresh": ts.stored_expires_at is not None and ts.stored_expires_at > now,
                            "missing": ts.missing,
                            "missing_since": to_rfc3339(ts.missing_since) if ts.missing_since else None,
                        }
                        for ts in st.targets
                    ],
                }
            )
        return {"now": to_rfc3339(now), "started_at": to_rfc3339(self.started_at), "credentials": creds}

    def credential_ready(self, st: CredentialState, now: float | None = None) -> bool:
        t = self.clock() if now is None else now
        return all(ts.stored_expires_at is not None and ts.stored_expires_at > t for ts in st.targets)

    def not_ready(self) -> list[dict[str, Any]]:
        """Every credential/target without an unexpired token (for /readyz)."""
        now = self.clock()
        out = []
        for st in self.credentials.values():
            for ts in st.targets:
                if ts.stored_expires_at is None or ts.stored_expires_at <= now:
                    if ts.missing is not None:
                        reason = f"missing: {ts.missing}"
                    else:
                        reason = "expired" if ts.stored_expires_at is not None else "no token written yet"
                    out.append(
                        {
                            "credential": st.name,
                            "target": ts.label,
                            "reason": reason,
                            "state": st.state,
                            "last_error": (ts.last_error or st.last_error or {}).get("message"),
                        }
                    )
        return out


def _is_job_task(task: asyncio.Task[Any]) -> bool:
    coro = task.get_coro()
    qualname = getattr(coro, "__qualname__", "")
    return "run_coroutine_job" in qualname or "Engine.run_credential" in qualname


def plan_findings(config: Config, stores: Mapping[str, Store]) -> list[Finding]:
    """Ask every store about every target's write volume (versions per day, quotas, cost).

    Also sums the average write rate per store against its ``max_writes_per_second``
    (e.g. SSM PutParameter allows 3/s by default): a fleet whose rotations need more
    than the limiter lets through would queue until tokens expire.
    """
    findings: list[Finding] = []
    # AWS write quotas are per account and region, whatever the number of stores: group
    # AWS stores by (type, region); other stores stand alone. The strictest limit applies.
    groups: dict[str, str] = {}
    limits: dict[str, float] = {}
    for name, scfg in config.stores.items():
        limit = getattr(scfg, "max_writes_per_second", None)
        if not isinstance(limit, int | float):
            continue
        region = getattr(scfg, "region", None)
        group = f"{scfg.type} region {region or '(default)'}" if scfg.type.startswith("aws-") else f"store {name}"
        groups[name] = group
        limits[group] = min(limits.get(group, float(limit)), float(limit))
    rate: dict[str, float] = {}
    for cred in config.credentials:
        pol = cred.policy(config.defaults)
        life = cred.token_lifetime_for(config.defaults)
        average_interval = max(policy.refresh_time(0.0, life, 0.0, pol, 0.5), pol.min_interval)
        for tgt in cred.targets:
            if tgt.store in groups:
                rate[groups[tgt.store]] = rate.get(groups[tgt.store], 0.0) + 1.0 / average_interval
    for name, per_second in sorted(rate.items()):
        limit = limits[name]
        if per_second <= 0.8 * limit:
            continue
        level: Literal["error", "warning"] = "error" if per_second > limit else "warning"
        findings.append(
            Finding(
                level,
                name,
                f"the credentials need {per_second:.2f} writes/s on average against a limit of {limit:g}/s "
                f"(max_writes_per_second){'; writes would queue until tokens expire' if level == 'error' else ''}",
                "spread credentials over more stores/regions, use longer-lived tokens or a later refresh_at, "
                "or raise the limit where the service allows it (e.g. SSM higher throughput)",
            )
        )
    for cred in config.credentials:
        pol = cred.policy(config.defaults)
        lifetime = cred.token_lifetime_for(config.defaults)
        if pol.min_remaining >= lifetime:
            findings.append(
                Finding(
                    "warning",
                    cred.name,
                    f"min_remaining ({pol.min_remaining:g}s) is not shorter than the token lifetime ({lifetime:g}s); "
                    f"refreshing at refresh_at ({pol.refresh_at:g}) of the lifetime instead",
                    "lower min_remaining for this credential",
                )
            )
        mint_timeout = config.daemon.mint_timeout
        used = policy.effective_mint_timeout(mint_timeout, lifetime)
        if used < mint_timeout:
            findings.append(
                Finding(
                    "warning",
                    cred.name,
                    f"[daemon] mint_timeout ({mint_timeout:g}s) is more than {policy.MINT_TIMEOUT_SHARE:.0%} of the "
                    f"token lifetime ({lifetime:g}s); its mints are cut off after {used:g}s instead",
                    f'set mint_timeout to at most "{used:g}s", or token_lifetime to the real lifetime',
                )
            )
        wpd = policy.writes_per_day(lifetime, pol)
        for tgt in cred.targets:
            store = stores.get(tgt.store)
            if store is None:
                continue
            try:
                found = store.plan(tgt.key, wpd, target=tgt)
            except StoreError as exc:
                found = [Finding("error", tgt.label, str(exc))]
            findings.extend(Finding(f.level, f"{cred.name} -> {f.subject}", f.message, f.fix) for f in found)
    return findings


__all__ = ["Engine", "RunReport", "plan_findings"]
