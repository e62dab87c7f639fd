"""How long to wait after a failed or unhelpful mint, and how far to trust the IdP.

Exponential backoff with full jitter, the slow pace after a credential (fatal) error,
and the rules that keep minting sane under a hostile IdP: a bound on one mint, a
Retry-After that must not outlive the token held, a token that arrives short or stale.
Pure like the refresh rule: the clock and the randomness are arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

# EXPIRY_SLACK (from syncd.payload, which needs it for holds_token): two expiries
# of one token closer than that are the same expiry.
from syncd.payload import EXPIRY_SLACK
from syncd.policy._checks import _check_rand, _check_times, _finite_positive, _require
from syncd.policy.refresh import RefreshPolicy, effective_deadline


def backoff_delay(attempt: int, policy: RefreshPolicy, rand: float, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (0 = the first retry).

    Full-jitter exponential backoff: uniform between ``retry_min`` and a cap
    that doubles per attempt up to ``retry_max``. Full jitter, rather than a
    small spread around the cap, is what lets a fleet that failed together
    (the IdP shed load with a 503) come back spread over the whole window.

    ``retry_after`` is the server's Retry-After in seconds. It is honoured as a
    lower bound, but never beyond ``max(retry_max, fatal_retry)``: a server asking
    for an hour must not park a credential whose token expires in minutes, and
    the engine only retries while the stored token is valid anyway. A missing,
    negative or NaN value changes nothing.
    """
    _require(attempt >= 0, "attempt", attempt, "must be >= 0")
    _check_rand(rand)
    try:
        doubled = math.ldexp(policy.retry_min, attempt)
    except OverflowError:  # attempt in the thousands: long past retry_max
        doubled = policy.retry_max
    cap = min(policy.retry_max, doubled)
    # min(): rounding of the sum must not step past the cap.
    delay = min(cap, policy.retry_min + rand * (cap - policy.retry_min))
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, max(policy.retry_max, policy.fatal_retry))
    return delay


def fatal_delay(policy: RefreshPolicy, rand: float) -> float:
    """Seconds to wait before retrying after a credential (fatal) error.

    A rotated shared secret fails every replica and credential at once; the
    jitter keeps their retries from hitting the IdP in lockstep. Never shorter
    than ``retry_max``: a fatal error must not be retried faster than a
    transient one.
    """
    _check_rand(rand)
    spread = policy.fatal_retry * (1.0 + policy.jitter * (2.0 * rand - 1.0))
    return max(spread, policy.retry_max)


#: Largest share of a token's lifetime one mint may take. A mint that hangs for
#: longer than this eats the margin the refresh schedule keeps before expiry.
MINT_TIMEOUT_SHARE = 0.25


def effective_mint_timeout(mint_timeout: float, lifetime: float | None) -> float:
    """The total time one mint may take: ``mint_timeout``, but at most a quarter of the token lifetime.

    ``lifetime`` is that of the valid token being served (the engine), or the
    expected ``token_lifetime`` (`syncd check`). None or a non-positive value
    leaves ``mint_timeout`` as is.
    """
    _require(_finite_positive(mint_timeout), "mint_timeout", mint_timeout, "must be > 0")
    if lifetime is None or not math.isfinite(lifetime) or lifetime <= 0.0:
        return mint_timeout
    return min(mint_timeout, lifetime * MINT_TIMEOUT_SHARE)


@dataclass(frozen=True)
class RetryPlan:
    """When to retry a transient mint failure, and whether the IdP's Retry-After was cut short."""

    delay: float
    asked: float | None
    """The IdP's Retry-After in seconds, if it sent one."""
    capped: bool
    """True when the IdP asked for a longer wait than ``delay``: worth a warning."""


def transient_retry(
    attempt: int,
    policy: RefreshPolicy,
    rand: float,
    *,
    now: float,
    retry_after: float | None = None,
    held: tuple[float, float] | None = None,
) -> RetryPlan:
    """`backoff_delay`, with Retry-After never outliving the token held.

    ``held`` is ``(issued_at, expires_at)`` of the token the targets serve. While
    it is valid, a Retry-After is honoured only up to its refresh deadline
    (`effective_deadline`, normally ``expires_at - min_remaining``): obeying an
    IdP that asks for an hour would let every target run out while the daemon
    waits politely. The jittered backoff is never shortened, so a deadline
    already passed means "retry at the normal backoff pace", not a hot loop.
    """
    _check_times(now=now)
    backoff = backoff_delay(attempt, policy, rand)
    delay = backoff_delay(attempt, policy, rand, retry_after)
    if held is not None:
        issued_at, expires_at = held
        _check_times(issued_at=issued_at, expires_at=expires_at)
        if now < expires_at:
            latest = effective_deadline(issued_at, expires_at, policy) - now
            delay = min(delay, max(latest, backoff))
    asked = retry_after if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0 else None
    return RetryPlan(delay=delay, asked=asked, capped=asked is not None and asked > delay)


MintVerdict = Literal["fresh", "short", "stale"]


def judge_minted(
    expires_at: float,
    now: float,
    policy: RefreshPolicy,
    *,
    expected_lifetime: float,
    held_expires_at: float | None = None,
) -> MintVerdict:
    """Whether a token that just arrived is usable as is, and whether minting again soon could help.

    * ``stale``: it expires (by more than `EXPIRY_SLACK`) before the valid token
      already held (an IdP handing back an older token): keep the held one and
      back off. The same expiry is not stale: a caching IdP answers with the
      token held, and whether that is a problem depends on what it has left;
    * ``short``: it has less than ``min_remaining`` left although the expected
      lifetime allows ``min_remaining`` (a caching IdP near the end of its cache,
      or a token expired on arrival): use it if it is the freshest, and back off
      instead of re-minting every ``min_interval`` for a token the IdP will hand
      back unchanged;
    * ``fresh``: everything else, including genuinely short-lived tokens when the
      configuration expects them (``token_lifetime <= min_remaining``).
    """
    _check_times(expires_at=expires_at, now=now)
    if held_expires_at is not None and held_expires_at > now and expires_at < held_expires_at - EXPIRY_SLACK:
        return "stale"
    remaining = expires_at - now
    if remaining <= 0.0:
        return "short"
    if remaining < policy.min_remaining < expected_lifetime:
        return "short"
    return "fresh"


def short_token_delay(attempt: int, policy: RefreshPolicy, rand: float, remaining: float) -> float:
    """Seconds until the next mint after a ``short`` or ``stale`` token (see `judge_minted`).

    Exponential with full jitter like a transient failure, but never past the
    expiry of the token being served (``remaining`` seconds away): an IdP that
    caches a token hands out a new one once it expires, and the targets must
    not wait a whole ``retry_max`` for it. ``retry_min`` and ``min_interval``
    stay the floor, so a token expired on arrival cannot start a hot loop.
    """
    backoff = backoff_delay(attempt, policy, rand)
    return max(policy.min_interval, policy.retry_min, min(backoff, remaining))
