"""One credential's rotation, top to bottom: mint when due, write every target, record the outcome.

A run is state-driven rather than step-driven:

* mint only when the held token has reached its refresh time (or there is none),
  and the last mint attempt's backoff has passed (`decide.mint_due`);
* write the held token to every target that does not hold it yet and whose own
  backoff has passed. A target that failed is retried with the *same* token
  while it is valid, never with a fresh mint just for it;
* a failed mint keeps the last good token in every target, and a token is never
  written once it has expired.

`Rotation` knows nothing of the scheduler: it is given the mint (`minting.Minter`), the
metrics, the clock and the randomness, and one hook to arm a credential's read-back.
When the next run is due is `decide.next_run`'s answer, asked by the lifecycle.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from syncd import identity, logs, policy
from syncd.config import Config
from syncd.engine import decide, readback, setbacks, takeover
from syncd.engine.state import CredentialState, Outcome, TargetState, error_view
from syncd.metrics import Metrics
from syncd.payload import TokenPayload, to_rfc3339
from syncd.stores.base import StoreError, TransientStoreError, WriteResult

log = logs.get_logger("syncd.engine")

#: At most this many replaced tokens per credential the log redactor still knows, each until it
#: expires: while valid, a replaced token may still be quoted (a store's error, a read-back), and
#: after that nothing can use it. With the default refresh_at (0.5) that is about one; a lower
#: refresh_at keeps more valid at once. Each is kept as the redactor's handle (hashes, ~100 bytes),
#: not as the token string (~0.7 KB for a JWT: 70 MB at 100,000 credentials).
RETAINED_TOKENS = 3
ADOPT_REFUSALS = 2  # overwrites of an implausible token a store offers, before giving up (transient)


class Mints(Protocol):
    """What a rotation needs to mint: `Minter` in the daemon, any stand-in in a test."""

    async def mint(self, st: CredentialState) -> TokenPayload: ...


class Rotation:
    """Runs one credential's rotation on the `CredentialState` it is given."""

    def __init__(
        self,
        *,
        minter: Mints,
        settings: Callable[[], Config],
        metrics: Metrics,
        clock: Callable[[], float],
        rng: random.Random,
        readback_planned: Callable[[CredentialState], None] = lambda st: None,
    ) -> None:
        self.minter = minter
        self._settings = settings
        self.metrics = metrics
        self.clock = clock
        self.rng = rng
        self._readback_planned = readback_planned  # plans the credential's read-back (the engine's sweep)

    # ------------------------------------------------------------------ the run

    async def run(self, st: CredentialState, *, force_mint: bool = False) -> None:
        """One run: maybe mint, write the targets that lack the token, update the state.

        A follower (rank > 0 among several replicas) that is due first reads the targets
        and mints only when no fresher token is there (`takeover.follow`).
        """
        due_at = takeover.due_at(st)
        mint = decide.mint_due(self.clock(), st.token, st.mint_retry_at, force=force_mint, due_at=due_at)
        following = mint and not force_mint and st.rank > 0
        if following:
            mint = await takeover.follow(self, st)
        if mint:
            minting_as = identity.digest(st.cfg)
            if await self.attempt_mint(st):
                st.minted_with = minting_as
                if following:
                    self.metrics.takeovers.inc()
        await self.write_pending(st)
        self.update_state(st)

    def update_state(self, st: CredentialState) -> None:
        """The credential's state, failure count and last error after a run (`decide.standing`)."""
        standing = decide.standing(
            self.clock(),
            st.token,
            mint_failures=st.mint_failures,
            last_mint_outcome=st.last_mint_outcome,
            targets=[(ts.failures, ts.last_outcome) for ts in st.targets],
        )
        failing_targets = [ts for ts in st.targets if ts.failures]
        if st.mint_failures == 0 and not failing_targets:
            st.last_error = None
        elif st.mint_failures == 0:
            st.last_error = failing_targets[0].last_error
        st.state, st.consecutive_failures = standing.state, standing.consecutive_failures

    # ------------------------------------------------------------------ minting

    async def attempt_mint(self, st: CredentialState) -> bool:
        """Mint and hold the new token; False when the mint failed or its token was not taken."""
        started = self.clock()
        st.last_attempt = started
        st.minting_since = started
        try:
            payload = await self.minter.mint(st)
        except Exception as exc:
            return setbacks.failed(self, st, exc, started)
        finally:
            # Also when the run is cancelled (drain_timeout): /status must not show a mint in flight.
            st.minting_since = None
        now = self.clock()
        verdict = decide.minted_verdict(
            payload.expires_at,
            now,
            st.policy,
            expected_lifetime=st.cfg.token_lifetime_for(self._settings().defaults),
            held=st.token,
        )
        if verdict != "fresh":
            return setbacks.short(self, st, payload, verdict, now)
        st.mints += 1
        st.mint_failures, st.mint_retry_at = 0, None
        st.last_mint, st.last_mint_outcome, st.adopted = now, "ok", False
        st.held = "minted"
        self.set_token(st, payload)
        self.metrics.mints.labels(st.name, "ok").inc()
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

    # ------------------------------------------------------------------ the token held

    def set_token(self, st: CredentialState, payload: TokenPayload) -> None:
        old = st.token
        st.token = payload
        # The redactor keeps recognising a replaced token while it is valid, and not forever (67
        # rotations/s would grow it by millions a day): see RETAINED_TOKENS.
        if old is not None and old.fingerprint != payload.fingerprint:
            st.retired.append((logs.secret_handle(old.access_token.get_secret_value()), old.expires_at))
        if not st.retired:  # the usual case at start-up's adoption: nothing to look at
            return
        now = self.clock()
        held: logs.SecretHandle | None = None
        while st.retired and (len(st.retired) > RETAINED_TOKENS or st.retired[0][1] <= now):
            handle, _ = st.retired.popleft()
            held = held or logs.secret_handle(payload.access_token.get_secret_value())
            # An IdP that hands a token out again: still held, or retained again with a later expiry.
            if handle != held and all(handle != kept for kept, _ in st.retired):
                logs.forget_secret(handle)

    def rebase(self, st: CredentialState, payload: TokenPayload) -> TokenPayload:
        """Adopt a token another writer stored: our own jittered refresh time for it.

        Shared by several replicas (``st.ranked``), the stored ``refresh_after`` is kept
        (never past the deadline): every rank's wake counts from it (`decide.wake_at`).
        """
        st.held = "adopted"
        if st.ranked:
            deadline = policy.effective_deadline(payload.issued_at, payload.expires_at, st.policy)
            refresh = min(payload.refresh_after, deadline)
        else:
            refresh = policy.refresh_time(
                payload.issued_at, payload.expires_at, self.clock(), st.policy, self.rng.random()
            )
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

    def implausible(self, st: CredentialState, payload: TokenPayload) -> str | None:
        """Why a token a store offers must not be adopted (`policy.implausible`), or None."""
        return policy.implausible(
            payload, credential=st.name, now=self.clock(), max_lifetime=st.max_lifetime, seen_lifetime=st.seen_lifetime
        )

    # ------------------------------------------------------------------ writing

    async def write_pending(self, st: CredentialState, *, force: bool = False) -> None:
        """Write the held token to every target without it whose backoff has passed (``force``: all)."""
        for _ in range(2):  # a second pass spreads a token adopted from another writer
            token = st.token
            now = self.clock()
            if token is None or token.expired(now):
                return
            pending = [
                ts for ts in st.targets if not ts.holds(token) and decide.write_due(now, ts.retry_at, force=force)
            ]
            if not pending:
                return
            if len(pending) == 1:  # the usual case: no task and gather for one write
                results = [await self._write_target(st, pending[0], token)]
            else:
                results = await asyncio.gather(*(self._write_target(st, ts, token) for ts in pending))
            fresher = [p for p in results if p is not None]
            if not fresher:
                return
            best = max(fresher, key=lambda p: p.expires_at)
            if st.token is not None and best.expires_at > st.token.expires_at:
                log.info("adopted", credential=st.name, fingerprint=best.fingerprint, reason="another writer")
                self.set_token(st, self.rebase(st, best))

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
            ts.last_error = error_view(serr)
            delay = decide.write_retry_delay(
                serr.transient, ts.failures - 1, st.policy, self.rng.random(), serr.retry_after
            )
            ts.retry_at = now + delay
            self.metrics.writes.labels(st.name, ts.label, outcome).inc()
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
        self.verified(st, ts, payload, ts.last_success)
        self.metrics.writes.labels(st.name, ts.label, "ok").inc()
        self.metrics.target_last_success.labels(st.name, ts.label).set(ts.last_success)
        self.metrics.target_token_expiry.labels(st.name, ts.label).set(ts.stored_expires_at)
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
            reason = self.implausible(st, offered) if offered is not None else None
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
        still = self.implausible(st, result.adopted) if result.adopted is not None else None
        if still is not None:
            raise TransientStoreError(
                f"{ts.label}: another writer keeps storing a token syncd refuses to adopt ({still}); "
                "find and stop that writer",
                code="implausible_payload",
            )
        return result

    # ------------------------------------------------------------------ read-back

    def verified(self, st: CredentialState, ts: TargetState, payload: TokenPayload, at: float) -> None:
        """The target holds ``payload`` as of ``at``: plan its next read-back and arm the job for it."""
        readback.plan_next(st, ts, payload, at)
        self._readback_planned(st)

    def read_holding(self, st: CredentialState, ts: TargetState, at: float) -> None:
        """The target was read at ``at`` holding the held token (adoption): plan what follows a check."""
        readback.plan_after_read(st, ts, at)
        self._readback_planned(st)

    async def verify_many(self, states: Iterable[CredentialState]) -> list[CredentialState]:
        """Read back the due targets of ``states`` together; the credentials found without their token."""
        return await readback.verify_many(states, self.clock, self.implausible)
