"""The engine's decisions, as pure functions: values in, a decision out.

No I/O, no logging and no clock: ``now`` and the random draw are arguments, so each rule
is tested with a table (tests/unit/test_engine_decide.py). The refresh arithmetic itself
(refresh times, backoff, Retry-After, plausibility) is `syncd.policy`'s; this module only
puts it together the way one credential's run needs it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from syncd import policy
from syncd.config import SecretUnavailableError
from syncd.engine.state import Outcome, State
from syncd.oauth import MintError, TransientMintError
from syncd.payload import TokenPayload, holds_token
from syncd.replicas.ranking import rank as rendezvous_rank
from syncd.replicas.ranking import wake_time

#: The next run is never sooner than this: even "now" is a few milliseconds away.
MIN_RUN_GAP = 0.005


def _valid(token: TokenPayload | None, now: float) -> bool:
    return token is not None and not token.expired(now)


# ------------------------------------------------------------------ when to mint, write and run


def refresh_due(now: float, token: TokenPayload | None, due_at: float | None = None) -> bool:
    """No token, or the held one has reached its refresh time (or expired).

    ``due_at`` replaces the held token's ``refresh_after`` where this replica acts later
    (a follower, `wake_at`); with no token it is when a follower first looks.
    """
    if token is None:
        return due_at is None or now >= due_at
    return now >= (token.refresh_after if due_at is None else due_at) or token.expired(now)


def mint_due(
    now: float,
    token: TokenPayload | None,
    mint_retry_at: float | None,
    *,
    force: bool = False,
    due_at: float | None = None,
) -> bool:
    """Whether this run mints: the token is due and the last attempt's backoff has passed."""
    if force:
        return True
    return refresh_due(now, token, due_at) and (mint_retry_at is None or now >= mint_retry_at)


def write_due(now: float, retry_at: float | None, *, force: bool = False) -> bool:
    """Whether a target without the held token is written in this pass (its own backoff has passed)."""
    return force or retry_at is None or now >= retry_at


def next_run(
    now: float,
    token: TokenPayload | None,
    *,
    mint_retry_at: float | None,
    last_attempt: float | None,
    min_interval: float,
    unwritten_retry_at: Iterable[float | None] = (),
    due_at: float | None = None,
) -> float:
    """When the credential's next run is due.

    ``unwritten_retry_at`` holds the ``retry_at`` of each target that does not hold
    ``token`` (None: no backoff). The earliest of these wins: the refresh time of a
    token not yet due (``due_at`` for a follower, see `wake_at`); else the mint backoff,
    never sooner than ``min_interval`` after the last attempt, so a token that is due as
    soon as it is minted cannot turn into a hot loop against the IdP; and, while the
    token is valid, each unwritten target's own retry time.
    """
    if refresh_due(now, token, due_at):
        due = mint_retry_at if mint_retry_at is not None else now
        if last_attempt is not None:
            due = max(due, last_attempt + min_interval)
        candidates = [due]
    elif due_at is not None:
        candidates = [due_at]
    else:
        assert token is not None  # refresh_due is True without one
        candidates = [token.refresh_after]
    if _valid(token, now):
        candidates.extend(at if at is not None else now for at in unwritten_retry_at)
    return max(min(candidates), now + MIN_RUN_GAP)


# ------------------------------------------------------------------ several replicas (docs/ha.md)


def credential_rank(credential: str, replica: int, replicas: int, *, shared: bool) -> int:
    """This replica's rank for a credential: rendezvous order, or 0 when there is nothing to share.

    One replica, or only pod-local targets (file stores, ``shared`` False): no replica can
    see another's token, so each one refreshes the credential itself, as rank 0.
    """
    if replicas <= 1 or not shared:
        return 0
    return rendezvous_rank(credential, replica, replicas)


def wake_at(
    token: TokenPayload | None,
    *,
    rank: int,
    delay: float,
    pol: policy.RefreshPolicy,
    waiting_since: float | None = None,
) -> float | None:
    """When a follower (rank > 0) acts for a credential; None: at the held token's refresh time.

    Rank k wakes at the held payload's ``refresh_after + k x delay``: the payload as
    stored (an adopted token keeps the writer's ``refresh_after``), so an adoption never
    pushes the next wake later. Never after the token's refresh deadline (a payload
    written with a later ``refresh_after`` than this replica's policy allows). Holding
    no token, a follower first looks ``k x delay`` after ``waiting_since`` (its start):
    a cold start of every replica then mints each credential about once, not N times.
    """
    if rank <= 0:
        return None
    if token is None:
        return None if waiting_since is None else wake_time(waiting_since, rank, delay)
    deadline = policy.effective_deadline(token.issued_at, token.expires_at, pol)
    return min(wake_time(token.refresh_after, rank, delay), deadline)


def _fresher(stored: TokenPayload, held: TokenPayload) -> bool:
    # The held token read back (its times rounded to the millisecond) is not a fresher one.
    return stored.expires_at > held.expires_at and not holds_token(held.fingerprint, held.expires_at, stored)


@dataclass(frozen=True)
class FollowerStep:
    """What a follower does at its wake: adopt a stored token (or not), then mint (or not)."""

    adopt: TokenPayload | None
    mint: bool


def follower_step(
    now: float,
    held: TokenPayload | None,
    stored: Iterable[TokenPayload],
    *,
    rank: int,
    delay: float,
    pol: policy.RefreshPolicy,
) -> FollowerStep:
    """A follower read its targets (``stored``: this credential's plausible payloads found there).

    The freshest unexpired one that expires after the held token is adopted, and the
    follower mints only if that token is itself already due for its rank. Nothing
    fresher (nothing stored, only the held token, an expired one): every rank before
    this one missed the refresh, so this one takes over and mints.
    """
    fresher = [p for p in stored if not p.expired(now) and (held is None or _fresher(p, held))]
    if not fresher:
        return FollowerStep(adopt=None, mint=True)
    best = max(fresher, key=lambda p: p.expires_at)
    return FollowerStep(adopt=best, mint=refresh_due(now, best, wake_at(best, rank=rank, delay=delay, pol=pol)))


# ------------------------------------------------------------------ minting


def mint_timeout(configured: float, token: TokenPayload | None, now: float) -> float:
    """The bound on one mint (`policy.effective_mint_timeout`).

    The quarter-lifetime clamp protects the margin of a token being served. With none
    valid there is nothing to protect, and clamping would leave a slow IdP (1 s answers,
    3 s tokens) unable to issue any token at all.
    """
    life = token.lifetime if token is not None and _valid(token, now) else None
    return policy.effective_mint_timeout(configured, life)


def mint_urgency(token: TokenPayload | None, now: float, pol: policy.RefreshPolicy) -> float:
    """The order of a mint waiting for a slot (`admission.MintSlots`): the lowest is admitted first.

    No valid token (nothing served, or the held one expired) is the most urgent; otherwise the
    held token's refresh deadline (`policy.effective_deadline`): the one whose consumers lose
    their margin first.
    """
    if token is None or not _valid(token, now):
        return -math.inf
    return policy.effective_deadline(token.issued_at, token.expires_at, pol)


def slot_patience(mint_timeout: float, token: TokenPayload | None, now: float, pol: policy.RefreshPolicy) -> float:
    """How long a mint may wait for one of its endpoint's slots before it fails (`admission.MintSlots`).

    ``mint_timeout`` (the exchange's own bound) with no valid token: nothing is served, and a
    hung IdP must show as failed mints. While a valid token is held, until ``mint_timeout``
    before its refresh deadline, so the exchange still ends by then: a mint queued behind a
    backlog waits for its turn instead of failing and coming back. Each failure costs a log
    line, a backoff and a rescheduled run, and a backlog of them on a busy loop was a retry
    storm that left no time for the mints themselves (100,000 credentials after start-up).
    """
    if token is None or not _valid(token, now):
        return mint_timeout
    deadline = policy.effective_deadline(token.issued_at, token.expires_at, pol)
    return max(mint_timeout, deadline - now - mint_timeout)


def mint_outcome(exc: BaseException) -> Outcome:
    """A failed mint's kind: a `MintError` says what it is; a missing secret or a bad
    request is a credential problem (fatal pace); anything unexpected is retried with backoff."""
    known = (MintError, SecretUnavailableError, ValueError)
    transient = isinstance(exc, TransientMintError) or not isinstance(exc, known)
    return "transient" if transient else "fatal"


def mint_retry(
    outcome: Outcome,
    attempt: int,
    pol: policy.RefreshPolicy,
    rand: float,
    *,
    now: float,
    retry_after: float | None,
    held: TokenPayload | None,
) -> policy.RetryPlan:
    """The wait after a failed mint (``attempt`` counts from 0).

    Transient: backoff, with a Retry-After honoured only while it does not outlive the
    held token (`policy.transient_retry`; ``capped`` says it was cut). Fatal: the slow pace.
    """
    if outcome != "transient":
        return policy.RetryPlan(delay=policy.fatal_delay(pol, rand), asked=None, capped=False)
    span = (held.issued_at, held.expires_at) if held is not None else None
    return policy.transient_retry(attempt, pol, rand, now=now, retry_after=retry_after, held=span)


def minted_verdict(
    expires_at: float, now: float, pol: policy.RefreshPolicy, *, expected_lifetime: float, held: TokenPayload | None
) -> policy.MintVerdict:
    """`policy.judge_minted` against the held token, if it is still valid."""
    held_expires_at = held.expires_at if held is not None and _valid(held, now) else None
    return policy.judge_minted(
        expires_at, now, pol, expected_lifetime=expected_lifetime, held_expires_at=held_expires_at
    )


@dataclass(frozen=True)
class ShortTokenPlan:
    """What to do with a ``short`` or ``stale`` token: take it or not, and when to mint again."""

    take: bool
    delay: float


def short_token(
    verdict: policy.MintVerdict,
    minted: TokenPayload,
    held: TokenPayload | None,
    *,
    now: float,
    attempt: int,
    pol: policy.RefreshPolicy,
    rand: float,
) -> ShortTokenPlan:
    """A short token is served when it has not expired (it is the freshest there is); a stale
    one never. The next mint backs off, but not past the expiry of the token being served."""
    take = verdict == "short" and not minted.expired(now)
    serving = minted if take or held is None else held
    return ShortTokenPlan(take, policy.short_token_delay(attempt, pol, rand, serving.expires_at - now))


# ------------------------------------------------------------------ writing


def write_retry_delay(
    transient: bool, attempt: int, pol: policy.RefreshPolicy, rand: float, retry_after: float | None
) -> float:
    """The wait before writing a target again after a failed write (``attempt`` counts from 0)."""
    if transient:
        return policy.backoff_delay(attempt, pol, rand, retry_after)
    return policy.fatal_delay(pol, rand)


# ------------------------------------------------------------------ the credential's standing


@dataclass(frozen=True)
class Standing:
    state: State
    consecutive_failures: int


def standing(
    now: float,
    token: TokenPayload | None,
    *,
    mint_failures: int,
    last_mint_outcome: Outcome | None,
    targets: Sequence[tuple[int, Outcome | None]],
) -> Standing:
    """The credential's state after a run; ``targets`` holds each target's (failures, last outcome)."""
    failing = [(failures, outcome) for failures, outcome in targets if failures]
    if mint_failures == 0 and not failing:
        consecutive = 0
    else:
        consecutive = max(mint_failures, max((failures for failures, _ in targets), default=0))
    state: State
    if token is None or token.expired(now):
        state = "fatal" if last_mint_outcome == "fatal" else ("expired" if token else "retrying")
    elif mint_failures:
        state = "fatal" if last_mint_outcome == "fatal" else "retrying"
    elif any(outcome == "fatal" for _, outcome in failing):
        state = "fatal"
    elif failing:
        state = "degraded"
    else:
        state = "ok"
    return Standing(state, consecutive)


def shown_state(state: State, token: TokenPayload | None, now: float) -> State:
    """The state /status shows: set after each run, but an expiry between two runs shows at once."""
    if token is not None and token.expired(now) and state in ("ok", "degraded", "retrying"):
        return "expired"
    return state


# ------------------------------------------------------------------ readiness and read-back


def target_ready(stored_expires_at: float | None, now: float) -> bool:
    """A target is ready while it holds an unexpired token."""
    return stored_expires_at is not None and stored_expires_at > now


def not_ready_reason(stored_expires_at: float | None, missing: str | None) -> str:
    """Why /readyz lists a target that is not ready."""
    if missing is not None:
        return f"missing: {missing}"
    return "expired" if stored_expires_at is not None else "no token written yet"


def verify_due(now: float, verify_at: float | None, stored_fingerprint: str | None, token: TokenPayload) -> bool:
    """A read-back is due for a target that, as far as we know, holds ``token``."""
    return verify_at is not None and now >= verify_at and stored_fingerprint == token.fingerprint
