"""Table tests for the rules that keep minting sane under a hostile IdP (syncd.policy)."""

from __future__ import annotations

import math

import pytest

from syncd import policy
from syncd.policy import RefreshPolicy

POL = RefreshPolicy(refresh_at=0.5, min_remaining=30.0, jitter=0.0, retry_min=1.0, retry_max=60.0, fatal_retry=300.0)


@pytest.mark.parametrize(
    ("mint_timeout", "lifetime", "expected"),
    [
        (10.0, None, 10.0),  # nothing known: as configured
        (10.0, 300.0, 10.0),  # a quarter of 300 s is 75 s: no clamp
        (10.0, 40.0, 10.0),  # exactly a quarter
        (10.0, 20.0, 5.0),  # clamped to a quarter
        (10.0, 3.0, 0.75),
        (10.0, 0.0, 10.0),  # nonsense lifetimes are ignored, not turned into a zero timeout
        (10.0, -5.0, 10.0),
        (10.0, math.inf, 10.0),
        (10.0, math.nan, 10.0),
    ],
)
def test_effective_mint_timeout(mint_timeout: float, lifetime: float | None, expected: float) -> None:
    assert policy.effective_mint_timeout(mint_timeout, lifetime) == pytest.approx(expected)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_effective_mint_timeout_rejects_nonsense(bad: float) -> None:
    with pytest.raises(ValueError, match="mint_timeout"):
        policy.effective_mint_timeout(bad, 300.0)


NOW = 1_000_000.0


@pytest.mark.parametrize(
    ("case", "attempt", "retry_after", "held", "delay", "capped"),
    [
        # no Retry-After: plain backoff (rand=0 -> retry_min)
        ("no retry-after", 0, None, (NOW - 10, NOW + 290), 1.0, False),
        # a short Retry-After is honoured as is
        ("honoured", 0, 5.0, (NOW - 10, NOW + 290), 5.0, False),
        # one hour: capped at the held token's deadline (expires - min_remaining = 260 s away)
        ("hour, token valid", 0, 3600.0, (NOW - 10, NOW + 290), 260.0, True),
        # ... and below max(retry_max, fatal_retry) when the token lives long
        ("hour, long token", 0, 3600.0, (NOW - 10, NOW + 3000), 300.0, True),
        # no token held: the old cap max(retry_max, fatal_retry) still applies and is reported
        ("hour, no token", 0, 3600.0, None, 300.0, True),
        # an expired token protects nothing: the old cap
        ("hour, token expired", 0, 3600.0, (NOW - 300, NOW - 1), 300.0, True),
        # deadline already passed: the normal backoff pace, never a hot loop
        ("deadline passed", 0, 3600.0, (NOW - 280, NOW + 20), 1.0, True),
        ("deadline passed, later attempt", 3, 3600.0, (NOW - 280, NOW + 20), 1.0, True),
        # Retry-After shorter than the remaining time stays exact
        ("inside deadline", 0, 100.0, (NOW - 10, NOW + 290), 100.0, False),
        # a past HTTP date comes as 0: no cap to report
        ("zero", 0, 0.0, (NOW - 10, NOW + 290), 1.0, False),
    ],
)
def test_transient_retry_never_outlives_the_token(
    case: str,
    attempt: int,
    retry_after: float | None,
    held: tuple[float, float] | None,
    delay: float,
    capped: bool,
) -> None:
    plan = policy.transient_retry(attempt, POL, 0.0, now=NOW, retry_after=retry_after, held=held)
    assert plan.delay == pytest.approx(delay), case
    assert plan.capped is capped, case
    assert plan.asked == retry_after, case
    if held is not None and NOW < held[1] and retry_after is not None:
        deadline = policy.effective_deadline(held[0], held[1], POL)
        backoff = policy.backoff_delay(attempt, POL, 0.0)
        assert NOW + plan.delay <= max(deadline, NOW + backoff) + 1e-9, case


@pytest.mark.parametrize(
    ("case", "expires_in", "expected_lifetime", "held_expires_in", "verdict"),
    [
        ("normal", 300.0, 300.0, None, "fresh"),
        ("normal, replaces held", 300.0, 300.0, 140.0, "fresh"),
        ("caching IdP near its end", 20.0, 300.0, None, "short"),
        ("expired on arrival", 0.0, 300.0, None, "short"),
        ("negative", -5.0, 300.0, None, "short"),
        # the configuration expects tokens shorter than min_remaining: not anomalous
        ("short-lived by design", 3.0, 3.0, None, "fresh"),
        ("short-lived by design, equal", 20.0, 30.0, None, "fresh"),
        # older than what is held (a cache handing back an older token)
        ("stale", 100.0, 300.0, 200.0, "stale"),
        ("expiry just before held", 198.0, 300.0, 200.0, "stale"),
        # the same expiry (within the slack of a round trip) is judged on what is left
        ("same expiry as held", 200.0, 300.0, 200.0, "fresh"),
        ("same expiry, a round trip earlier", 199.5, 300.0, 200.0, "fresh"),
        ("same expiry as held, little left", 20.0, 300.0, 20.2, "short"),
        ("later than held but short", 25.0, 300.0, 10.0, "short"),
        # a held token that expired protects nothing
        ("held expired", 300.0, 300.0, -1.0, "fresh"),
    ],
)
def test_judge_minted(
    case: str, expires_in: float, expected_lifetime: float, held_expires_in: float | None, verdict: str
) -> None:
    held = NOW + held_expires_in if held_expires_in is not None else None
    got = policy.judge_minted(NOW + expires_in, NOW, POL, expected_lifetime=expected_lifetime, held_expires_at=held)
    assert got == verdict, case


@pytest.mark.parametrize(
    ("attempt", "remaining", "expected"),
    [
        (0, 20.0, 1.0),  # retry_min first
        (3, 20.0, 8.0),  # doubles (rand=1 -> the cap of this attempt)
        (10, 20.0, 20.0),  # never past the expiry of the token served
        (10, 0.2, 1.0),  # ... but never below retry_min/min_interval: no hot loop
        (10, -3.0, 1.0),
    ],
)
def test_short_token_delay(attempt: int, remaining: float, expected: float) -> None:
    rand = 0.0 if attempt == 0 else 1.0
    assert policy.short_token_delay(attempt, POL, rand, remaining) == pytest.approx(expected)
