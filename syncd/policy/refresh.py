"""When to refresh a token: the refresh rule, and whether a stored token is fresh enough to adopt.

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

from syncd.policy._checks import _check_rand, _check_times, _finite_nonnegative, _finite_positive, _require


@dataclass(frozen=True)
class RefreshPolicy:
    """The knobs of the refresh and retry rules for one credential.

    Values are checked here, not only in the config layer, because every
    rule in syncd.policy relies on them (a jitter above 0.5 could schedule a refresh
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
