"""When to refresh a token, and how long to wait after a failure.

Every function here is pure: the caller passes the clock (``now``) and the
randomness (``rand``, uniform in [0, 1)). That keeps the scheduling rules in one
place that can be property-tested and replayed exactly from a log line, and
keeps the engine free of arithmetic. Times are float epoch seconds and
durations float seconds, as everywhere else in syncd.

The refresh rule, for a token issued at ``I`` that expires at ``E``
(lifetime ``L = E - I``)::

    base     = I + refresh_at * L
    deadline = effective_deadline(I, E)      # normally E - min_remaining
    planned  = min(base, deadline)
    jittered = I + (planned - I) * (1 + jitter * (2 * rand - 1))
    refresh  = max(now, min(deadline, max(I + min_interval, jittered)))

Read from the inside out: jitter spreads a fleet around the planned time; the
``min_interval`` floor stops a hot loop; the deadline beats both, because a
token handed out with less than ``min_remaining`` left is what this daemon
exists to prevent; and a time already in the past means "refresh now".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from syncd.payload import EXPIRY_SLACK, TokenPayload, fingerprint

__all__ = [
    "DEFAULT_RETRY_ALLOWANCE",
    "EXPIRY_SLACK",
    "MINT_TIMEOUT_SHARE",
    "SECONDS_PER_DAY",
    "MintVerdict",
    "RefreshPolicy",
    "RetryPlan",
    "backoff_delay",
    "effective_deadline",
    "effective_mint_timeout",
    "fatal_delay",
    "implausible",
    "is_fresh",
    "judge_minted",
    "min_refresh_interval",
    "refresh_time",
    "short_token_delay",
    "slots_needed",
    "transient_retry",
    "writes_per_day",
]

SECONDS_PER_DAY = 86_400.0

#: Extra writes budgeted on top of the refresh cadence, for writes that are
#: retried after a timeout or a 5xx. With an idempotency key (Secrets Manager's
#: ClientRequestToken, Vault's cas) a retried write mostly does not create a new
#: version, but "mostly" is not a quota guarantee, so the plan stays conservative.
DEFAULT_RETRY_ALLOWANCE = 0.05


def _require(ok: bool, name: str, value: float, rule: str) -> None:
    # Messages name the field so the config layer can point at the right key.
    if not ok:
        raise ValueError(f"{name} {rule}, got {value!r}")


def _finite_nonnegative(value: float) -> bool:
    return math.isfinite(value) and value >= 0.0


def _finite_positive(value: float) -> bool:
    return math.isfinite(value) and value > 0.0


@dataclass(frozen=True)
class RefreshPolicy:
    """The knobs of the refresh and retry rules for one credential.

    Values are checked here, not only in the config layer, because every
    function below relies on them (a jitter above 0.5 could schedule a refresh
    before the token was issued; a zero ``retry_min`` would retry in a hot loop).
    """

    refresh_at: float = 0.5
    """Fraction of the lifetime after issue at which to refresh, in (0, 1)."""
    min_remaining: float = 30.0
    """Refresh no later than ``expires_at - min_remaining`` (see `effective_deadline`)."""
    jitter: float = 0.1
    """+- fraction of the refresh delay, in [0, 0.5]: spreads a fleet started together."""
    retry_min: float = 1.0
    """Shortest wait before retrying a transient failure; > 0."""
    retry_max: float = 60.0
    """Longest wait between transient retries; >= ``retry_min``."""
    fatal_retry: float = 300.0
    """Pace of retries after a credential (fatal) error; > 0."""
    min_interval: float = 1.0
    """Floor between two mints of one credential, so no rule can become a hot loop."""

    def __post_init__(self) -> None:
        _require(0.0 < self.refresh_at < 1.0, "refresh_at", self.refresh_at, "must be in (0, 1)")
        _require(_finite_nonnegative(self.min_remaining), "min_remaining", self.min_remaining, "must be >= 0")
        _require(0.0 <= self.jitter <= 0.5, "jitter", self.jitter, "must be in [0, 0.5]")
        _require(_finite_positive(self.retry_min), "retry_min", self.retry_min, "must be > 0")
        _require(
            math.isfinite(self.retry_max) and self.retry_max >= self.retry_min,
            "retry_max",
            self.retry_max,
            "must be >= retry_min",
        )
        _require(_finite_positive(self.fatal_retry), "fatal_retry", self.fatal_retry, "must be > 0")
        _require(_finite_nonnegative(self.min_interval), "min_interval", self.min_interval, "must be >= 0")


def _check_rand(rand: float) -> None:
    # 1.0 is accepted: random.uniform(0, 1) may return it and the formulas stay in bounds.
    _require(0.0 <= rand <= 1.0, "rand", rand, "must be in [0, 1)")


def _check_times(**times: float) -> None:
    # A NaN or infinite time would silently compare false everywhere and
    # produce a schedule that never fires; fail loudly at the source instead.
    for name, value in times.items():
        _require(math.isfinite(value), name, value, "must be a finite epoch time")


def effective_deadline(issued_at: float, expires_at: float, policy: RefreshPolicy) -> float:
    """The latest moment a refresh may happen.

    Normally ``expires_at - min_remaining``, so a stored token always has at
    least ``min_remaining`` left for consumers. That guarantee cannot hold for a
    token that does not live much longer than ``min_remaining`` (3-second tokens
    in tests, with the default 30 s): taken literally it puts the deadline at or
    before the issue time and the daemon would re-mint in a hot loop. So the
    deadline is never earlier than::

        issued_at + refresh_at * min(lifetime, min_remaining)

    * a token living at most ``min_remaining`` refreshes at ``refresh_at`` of
      its lifetime, as if ``min_remaining`` were not set;
    * a token living at least ``(1 + refresh_at) * min_remaining`` gets the
      full ``min_remaining`` guarantee;
    * in between, the deadline stays at ``refresh_at * min_remaining`` after
      issue: the guarantee is partly given up rather than minting every second.

    The result grows continuously and monotonically with the lifetime, so a
    token one second longer is never refreshed sooner (a plain "fall back when
    min_remaining >= lifetime" rule would re-mint a 31 s token every second).

    A token that does not outlive its issue time has no schedule; its deadline
    is its expiry, which every caller treats as "refresh now".
    """
    _check_times(issued_at=issued_at, expires_at=expires_at)
    lifetime = expires_at - issued_at
    if lifetime <= 0.0:
        return expires_at
    floor = issued_at + policy.refresh_at * min(lifetime, policy.min_remaining)
    return max(expires_at - policy.min_remaining, floor)


def _planned(issued_at: float, expires_at: float, policy: RefreshPolicy) -> tuple[float, float]:
    """(planned refresh time without jitter, deadline) for a token with a positive lifetime."""
    deadline = effective_deadline(issued_at, expires_at, policy)
    base = issued_at + policy.refresh_at * (expires_at - issued_at)
    return min(base, deadline), deadline


def refresh_time(issued_at: float, expires_at: float, now: float, policy: RefreshPolicy, rand: float) -> float:
    """When to mint the successor of a token issued at ``issued_at``.

    The jitter is a fraction of the refresh *delay*, not of the lifetime, so a
    fleet started in the same second (a rollout, a node drain) spreads out over
    ``2 * jitter`` of the cadence and stays spread. Clamps, in order:

    1. not earlier than ``issued_at + min_interval``: no hot loop;
    2. not later than the deadline: the deadline wins over the floor, since the
       only tokens where they collide live a couple of seconds at most;
    3. not earlier than ``now``: a time in the past means "refresh now", which is
       what a token adopted late, or a schedule that fired late, needs.

    A token that is already expired, or whose expiry is not after its issue
    time, is refreshed now.
    """
    _check_times(issued_at=issued_at, expires_at=expires_at, now=now)
    _check_rand(rand)
    if expires_at <= issued_at or now >= expires_at:
        return now
    planned, deadline = _planned(issued_at, expires_at, policy)
    jittered = issued_at + (planned - issued_at) * (1.0 + policy.jitter * (2.0 * rand - 1.0))
    at = min(max(jittered, issued_at + policy.min_interval), deadline)
    return max(at, now)


def is_fresh(issued_at: float, expires_at: float, now: float, policy: RefreshPolicy) -> bool:
    """Whether a token found in a store at start-up can be adopted instead of minting.

    Adopting saves a restart of a large daemon from stampeding the IdP. The test
    uses the planned time *without* jitter, so the answer is the same on every
    replica and every restart; the refresh that follows adoption is still
    jittered by `refresh_time`.
    """
    _check_times(issued_at=issued_at, expires_at=expires_at, now=now)
    if expires_at <= issued_at:
        return False
    planned, _ = _planned(issued_at, expires_at, policy)
    return now < planned and now < expires_at


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


def min_refresh_interval(lifetime: float, policy: RefreshPolicy) -> float:
    """The shortest time between two mints that `refresh_time` can produce.

    Quota checks must plan for the worst case, which is the jitter at its low
    end: the planned delay times ``1 - jitter``, floored at ``min_interval``.
    It is the minimum of `refresh_time` over ``rand`` for a token that is fresh
    when scheduled, including its one exception: for tokens so short that the
    deadline comes before ``min_interval``, the deadline is the answer.
    """
    _require(_finite_positive(lifetime), "lifetime", lifetime, "must be > 0")
    deadline = effective_deadline(0.0, lifetime, policy)
    delay = min(policy.refresh_at * lifetime, deadline)
    shortest = max(delay * (1.0 - policy.jitter), policy.min_interval)
    return min(shortest, deadline)


def writes_per_day(lifetime: float, policy: RefreshPolicy, retry_allowance: float = DEFAULT_RETRY_ALLOWANCE) -> float:
    """Upper estimate of writes per target per 24 h, for store quota checks.

    Secrets Manager counts versions per 24 h, so this uses the shortest refresh
    interval, plus ``retry_allowance`` (see `DEFAULT_RETRY_ALLOWANCE`).
    """
    _require(_finite_nonnegative(retry_allowance), "retry_allowance", retry_allowance, "must be >= 0")
    return SECONDS_PER_DAY / min_refresh_interval(lifetime, policy) * (1.0 + retry_allowance)


def slots_needed(lifetime: float, policy: RefreshPolicy, max_versions_per_day: float = 90.0) -> int:
    """How many secrets to spread writes over so none exceeds its version quota.

    The smallest ``N >= 1`` with ``writes_per_day / N <= max_versions_per_day``.
    Fewer slots mean fewer secrets to pay for and fewer ids for consumers to
    fetch, so the minimum is wanted, not merely a sufficient number.
    """
    _require(_finite_positive(max_versions_per_day), "max_versions_per_day", max_versions_per_day, "must be > 0")
    writes = writes_per_day(lifetime, policy)
    _require(math.isfinite(writes), "lifetime", lifetime, "is too short to plan writes for")
    slots = max(1, math.ceil(writes / max_versions_per_day))
    # ceil() of a rounded quotient can be one off either way; settle on the exact condition.
    while writes / slots > max_versions_per_day:
        slots += 1
    while slots > 1 and writes / (slots - 1) <= max_versions_per_day:
        slots -= 1
    return slots


# --------------------------------------------------------------------------- hostile IdPs

# EXPIRY_SLACK (imported from syncd.payload, which needs it for holds_token): two expiries
# of one token closer than that are the same expiry.

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


#: How far in the future a foreign payload's ``issued_at`` may lie: another host's clock
#: may run a little ahead of ours, a planted or corrupted payload's much further.
ADOPT_CLOCK_SKEW = 60.0


def implausible(
    payload: TokenPayload,
    *,
    credential: str,
    now: float,
    max_lifetime: float,
    seen_lifetime: float | None = None,
    skew: float = ADOPT_CLOCK_SKEW,
) -> str | None:
    """Why a payload found in a target must not be adopted, or None when it may be.

    Adopting is trusting: the token would be served (and copied to every other target)
    until its ``expires_at``. A payload written by a buggy or hostile writer, or edited by
    hand, could claim ten more years of life for a token revoked long ago. So a foreign
    payload is adopted only when it looks like something this credential's IdP issues:

    * it names this credential;
    * its fingerprint is the token's (a truncated or edited value is not);
    * it was not issued in the future beyond ``skew`` (hosts' clocks differ a little);
    * it expires after it was issued;
    * it does not live longer than the longest lifetime this process has minted for the
      credential (``seen_lifetime``, with a 5 % / 1 s allowance for clock rounding), or,
      before the first mint, than ``max_lifetime``.

    The result is the reason, written for the log (never the token).
    """
    if payload.credential != credential:
        return f"it names credential {payload.credential!r}, not {credential!r}"
    if payload.fingerprint != fingerprint(payload.access_token.get_secret_value()):
        return "its fingerprint does not match its token (a truncated or edited value)"
    if not (math.isfinite(payload.issued_at) and math.isfinite(payload.expires_at)):
        return "its issued_at or expires_at is not a finite time"
    if payload.issued_at > now + skew:
        return f"issued_at is {payload.issued_at - now:.0f}s in the future (more than the allowed {skew:g}s skew)"
    if payload.expires_at <= payload.issued_at:
        return "expires_at is not after issued_at"
    lifetime = payload.expires_at - payload.issued_at
    if seen_lifetime is not None and seen_lifetime > 0:
        bound = seen_lifetime + max(1.0, 0.05 * seen_lifetime)
        if lifetime > bound:
            return (
                f"its lifetime ({lifetime:.0f}s) is longer than the tokens the IdP issues for this credential "
                f"({seen_lifetime:.0f}s)"
            )
    elif lifetime > max_lifetime:
        return f"its lifetime ({lifetime:.0f}s) is longer than max_lifetime ({max_lifetime:.0f}s)"
    return None
