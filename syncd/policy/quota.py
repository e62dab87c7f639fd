"""How many writes a credential costs a store: the shortest refresh interval, writes per day, slots.

Store quota checks (Secrets Manager versions per 24 h, `syncd check`'s plan) plan for the
worst case of the refresh rule, so everything here is an upper estimate.
"""

from __future__ import annotations

import math

from syncd.policy._checks import _finite_nonnegative, _finite_positive, _require
from syncd.policy.refresh import RefreshPolicy, effective_deadline

SECONDS_PER_DAY = 86_400.0

#: Extra writes budgeted on top of the refresh cadence, for writes that are
#: retried after a timeout or a 5xx. With an idempotency key (Secrets Manager's
#: ClientRequestToken, Vault's cas) a retried write mostly does not create a new
#: version, but "mostly" is not a quota guarantee, so the plan stays conservative.
DEFAULT_RETRY_ALLOWANCE = 0.05


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
    return slots_for_rate(writes, max_versions_per_day)


def slots_for_rate(writes_per_day: float, max_per_day: float) -> int:
    """The smallest ``N >= 1`` with ``writes_per_day / N <= max_per_day`` (1 for a rate that is no number)."""
    if not math.isfinite(writes_per_day) or writes_per_day <= 0:
        return 1
    n = max(1, math.ceil(writes_per_day / max_per_day))
    # ceil() of a rounded quotient can be one off either way: two steps settle it (a loop until
    # the condition held never ended for an absurd rate, where n + 1 leaves the quotient unchanged).
    for _ in range(2):
        if writes_per_day / n > max_per_day:
            n += 1
        elif n > 1 and writes_per_day / (n - 1) <= max_per_day:
            n -= 1
    return n
