"""When to refresh a token, how long to wait after a failure, and what a store may cost.

Every function here is pure: the caller passes the clock (``now``) and the
randomness (``rand``, uniform in [0, 1)). That keeps the scheduling rules in one
place that can be property-tested and replayed exactly from a log line, and
keeps the engine free of arithmetic. One module per idea:

* `refresh`: the refresh rule (`RefreshPolicy`, `refresh_time`, `effective_deadline`,
  `is_fresh`);
* `retry`: backoff, the fatal pace, and the rules for a hostile IdP (mint timeout,
  Retry-After cap, a token that comes back short or stale);
* `quota`: the shortest refresh interval, writes per day, slots;
* `adoption`: whether a payload found in a target is plausible enough to adopt.

Callers import from ``syncd.policy``; the modules are how the rules are read.
"""

from __future__ import annotations

from syncd.payload import EXPIRY_SLACK
from syncd.policy.adoption import ADOPT_CLOCK_SKEW, implausible
from syncd.policy.quota import (
    DEFAULT_RETRY_ALLOWANCE,
    SECONDS_PER_DAY,
    min_refresh_interval,
    slots_for_rate,
    slots_needed,
    writes_per_day,
)
from syncd.policy.refresh import RefreshPolicy, effective_deadline, is_fresh, refresh_time
from syncd.policy.retry import (
    MINT_TIMEOUT_SHARE,
    MintVerdict,
    RetryPlan,
    backoff_delay,
    effective_mint_timeout,
    fatal_delay,
    judge_minted,
    short_token_delay,
    transient_retry,
)

__all__ = [
    "ADOPT_CLOCK_SKEW",
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
    "slots_for_rate",
    "slots_needed",
    "transient_retry",
    "writes_per_day",
]
