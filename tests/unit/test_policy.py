"""Refresh and retry rules: a table of worked examples, then properties.

The table pins the numbers operators see in `syncd check` and the docs; the
properties pin the guarantees the engine relies on for every input.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from syncd.policy import (
    RefreshPolicy,
    backoff_delay,
    effective_deadline,
    fatal_delay,
    is_fresh,
    min_refresh_interval,
    refresh_time,
    slots_needed,
    writes_per_day,
)

T0 = 1_700_000_000.0  # an issue time; every table case is relative to it
DEFAULT = RefreshPolicy()


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize(
    ("lifetime", "now_offset", "policy", "rand", "expected_offset"),
    [
        pytest.param(300, 0, DEFAULT, 0.5, 150, id="5min-token-refreshes-at-half"),
        pytest.param(1200, 0, DEFAULT, 0.5, 600, id="20min-token-refreshes-at-half"),
        pytest.param(3, 0, DEFAULT, 0.5, 1.5, id="3s-token-with-30s-min-remaining-is-not-a-hot-loop"),
        pytest.param(300, 0, DEFAULT, 0.0, 135, id="jitter-low-end"),
        pytest.param(300, 0, DEFAULT, 0.75, 157.5, id="jitter-upper-half"),
        pytest.param(300, 100, DEFAULT, 0.5, 150, id="adopted-token-keeps-its-schedule"),
        pytest.param(300, 0, RefreshPolicy(refresh_at=0.95), 0.5, 270, id="min-remaining-caps-late-refresh"),
        pytest.param(300, 0, RefreshPolicy(refresh_at=0.95), 0.0, 243, id="jitter-below-deadline"),
        pytest.param(300, 0, RefreshPolicy(refresh_at=0.95), 0.99, 270, id="jitter-never-past-deadline"),
        pytest.param(3, 0, DEFAULT, 0.99, 1.5, id="short-token-jitter-capped-by-deadline"),
        pytest.param(31, 0, DEFAULT, 0.5, 15, id="31s-token-not-reminted-every-second"),
        pytest.param(60, 0, DEFAULT, 0.5, 30, id="60s-token-base-meets-deadline"),
        pytest.param(100, 0, RefreshPolicy(refresh_at=0.9), 0.5, 70, id="100s-token-keeps-30s-left"),
        pytest.param(300, 0, RefreshPolicy(refresh_at=0.02, min_interval=10), 0.5, 10, id="min-interval-floor"),
        pytest.param(1.5, 0, DEFAULT, 0.0, 0.75, id="deadline-beats-min-interval"),
        pytest.param(300, 280, DEFAULT, 0.5, 280, id="past-deadline-refresh-now"),
        pytest.param(300, 200, DEFAULT, 0.0, 200, id="past-planned-time-refresh-now"),
        pytest.param(300, 400, DEFAULT, 0.5, 400, id="expired-refresh-now"),
        pytest.param(300, 300, DEFAULT, 0.5, 300, id="expiring-this-instant-refresh-now"),
        pytest.param(0, 5, DEFAULT, 0.5, 5, id="zero-lifetime-refresh-now"),
        pytest.param(-10, 5, DEFAULT, 0.5, 5, id="expiry-before-issue-refresh-now"),
    ],
)
def test_refresh_time_examples(lifetime, now_offset, policy, rand, expected_offset):
    got = refresh_time(T0, T0 + lifetime, T0 + now_offset, policy, rand)
    assert got - T0 == pytest.approx(expected_offset, abs=1e-6)


@pytest.mark.parametrize(
    ("lifetime", "policy", "expected_offset"),
    [
        pytest.param(300, DEFAULT, 270, id="5min-keeps-min-remaining"),
        pytest.param(1200, DEFAULT, 1170, id="20min-keeps-min-remaining"),
        pytest.param(3, DEFAULT, 1.5, id="shorter-than-min-remaining-falls-back-to-refresh-at"),
        pytest.param(30, DEFAULT, 15, id="exactly-min-remaining"),
        pytest.param(31, DEFAULT, 15, id="just-over-min-remaining"),
        pytest.param(45, DEFAULT, 15, id="full-guarantee-starts-at-(1+refresh_at)*min_remaining"),
        pytest.param(46, DEFAULT, 16, id="full-guarantee"),
        pytest.param(300, RefreshPolicy(min_remaining=0), 300, id="no-min-remaining"),
        pytest.param(0, DEFAULT, 0, id="zero-lifetime-deadline-is-expiry"),
    ],
)
def test_effective_deadline_examples(lifetime, policy, expected_offset):
    assert effective_deadline(T0, T0 + lifetime, policy) - T0 == pytest.approx(expected_offset, abs=1e-6)


@pytest.mark.parametrize(
    ("lifetime", "now_offset", "policy", "expected"),
    [
        pytest.param(300, 0, DEFAULT, True, id="just-minted"),
        pytest.param(300, 149.9, DEFAULT, True, id="before-planned-refresh"),
        pytest.param(300, 150, DEFAULT, False, id="at-planned-refresh"),
        pytest.param(1200, 599, DEFAULT, True, id="20min-before-planned"),
        pytest.param(300, 275, RefreshPolicy(refresh_at=0.95), False, id="inside-min-remaining"),
        pytest.param(300, 301, DEFAULT, False, id="expired"),
        pytest.param(0, 0, DEFAULT, False, id="zero-lifetime"),
        pytest.param(300, -60, DEFAULT, True, id="issued-ahead-of-our-clock"),
    ],
)
def test_is_fresh_examples(lifetime, now_offset, policy, expected):
    assert is_fresh(T0, T0 + lifetime, T0 + now_offset, policy) is expected


@pytest.mark.parametrize(
    ("attempt", "rand", "retry_after", "expected"),
    [
        pytest.param(0, 0.0, None, 1.0, id="first-retry-low"),
        pytest.param(0, 0.99, None, 1.0, id="first-retry-cap-is-retry-min"),
        pytest.param(1, 0.5, None, 1.5, id="second-retry"),
        pytest.param(3, 0.5, None, 4.5, id="cap-doubles"),
        pytest.param(10, 0.5, None, 30.5, id="cap-reaches-retry-max"),
        pytest.param(10**6, 0.5, None, 30.5, id="huge-attempt-no-overflow"),
        pytest.param(10**100, 0.99, None, 1 + 0.99 * 59, id="absurd-attempt-no-overflow"),
        pytest.param(0, 0.0, 120.0, 120.0, id="retry-after-honoured"),
        pytest.param(10, 0.5, 20.0, 30.5, id="retry-after-below-jitter-changes-nothing"),
        pytest.param(0, 0.0, 3600.0, 300.0, id="retry-after-capped-at-fatal-retry"),
        pytest.param(0, 0.0, -5.0, 1.0, id="retry-after-in-the-past"),
        pytest.param(0, 0.0, math.nan, 1.0, id="retry-after-nan-ignored"),
        pytest.param(0, 0.0, math.inf, 300.0, id="retry-after-inf-capped"),
    ],
)
def test_backoff_delay_examples(attempt, rand, retry_after, expected):
    assert backoff_delay(attempt, DEFAULT, rand, retry_after) == pytest.approx(expected)


def test_retry_after_cap_uses_retry_max_when_larger_than_fatal_retry():
    policy = RefreshPolicy(retry_max=600, fatal_retry=300)
    assert backoff_delay(0, policy, 0.0, retry_after=3600) == 600


@pytest.mark.parametrize(
    ("policy", "rand", "expected"),
    [
        pytest.param(DEFAULT, 0.5, 300, id="centre"),
        pytest.param(DEFAULT, 0.0, 270, id="low"),
        pytest.param(DEFAULT, 0.75, 315, id="high"),
        pytest.param(RefreshPolicy(retry_max=600), 0.5, 600, id="never-below-retry-max"),
        pytest.param(RefreshPolicy(jitter=0), 0.1, 300, id="no-jitter"),
    ],
)
def test_fatal_delay_examples(policy, rand, expected):
    assert fatal_delay(policy, rand) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("lifetime", "policy", "interval", "writes", "slots"),
    [
        # 150 s planned, 135 s at the low end of the jitter: 640 a day, +5 % retries.
        pytest.param(300, DEFAULT, 135, 672, 8, id="5min-token-needs-8-slots"),
        pytest.param(1200, DEFAULT, 540, 168, 2, id="20min-token-at-half"),
        # 900 s planned, 810 s worst case: 106.7 a day + 5 % = 112 > 90. Even with
        # no jitter and no allowance it is 96 a day, which is under AWS's 100 but
        # over syncd's limit of 90; so a 20-minute token at 0.75 needs two slots.
        pytest.param(1200, RefreshPolicy(refresh_at=0.75), 810, 112, 2, id="20min-token-at-0.75"),
        pytest.param(1200, RefreshPolicy(refresh_at=0.95), 1026, 86400 / 1026 * 1.05, 1, id="20min-token-at-0.95"),
        pytest.param(3, DEFAULT, 1.35, 67200, 747, id="3s-test-token"),
        pytest.param(1.5, DEFAULT, 0.75, 86400 / 0.75 * 1.05, 1344, id="deadline-beats-min-interval"),
        pytest.param(300, RefreshPolicy(refresh_at=0.001), 1.0, 86400 * 1.05, 1008, id="min-interval-floor"),
    ],
)
def test_write_volume_examples(lifetime, policy, interval, writes, slots):
    assert min_refresh_interval(lifetime, policy) == pytest.approx(interval)
    assert writes_per_day(lifetime, policy) == pytest.approx(writes)
    assert slots_needed(lifetime, policy) == slots


def test_20min_token_at_075_fits_one_slot_only_against_the_raw_aws_limit():
    policy = RefreshPolicy(refresh_at=0.75, jitter=0.0)
    assert writes_per_day(1200, policy, retry_allowance=0.0) == pytest.approx(96)
    assert slots_needed(1200, policy, max_versions_per_day=90) == 2
    assert slots_needed(1200, RefreshPolicy(refresh_at=0.75), max_versions_per_day=100) == 2
    assert slots_needed(1200, RefreshPolicy(refresh_at=0.75), max_versions_per_day=120) == 1


def test_writes_per_day_retry_allowance():
    assert writes_per_day(300, DEFAULT, retry_allowance=0.0) == pytest.approx(640)
    with pytest.raises(ValueError, match="retry_allowance"):
        writes_per_day(300, DEFAULT, retry_allowance=-0.1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("refresh_at", 0.0),
        ("refresh_at", 1.0),
        ("refresh_at", math.nan),
        ("min_remaining", -1.0),
        ("min_remaining", math.inf),
        ("jitter", -0.1),
        ("jitter", 0.51),
        ("retry_min", 0.0),
        ("retry_max", 0.5),  # below retry_min
        ("fatal_retry", 0.0),
        ("min_interval", -1.0),
    ],
)
def test_policy_rejects_out_of_range_values(field, value):
    with pytest.raises(ValueError, match=field):
        RefreshPolicy(**{field: value})


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: refresh_time(T0, T0 + 300, T0, DEFAULT, 1.5), id="rand-above-1"),
        pytest.param(lambda: refresh_time(T0, T0 + 300, T0, DEFAULT, -0.1), id="rand-negative"),
        pytest.param(lambda: refresh_time(T0, T0 + 300, math.nan, DEFAULT, 0.5), id="now-nan"),
        pytest.param(lambda: refresh_time(T0, math.inf, T0, DEFAULT, 0.5), id="expiry-inf"),
        pytest.param(lambda: backoff_delay(-1, DEFAULT, 0.5), id="negative-attempt"),
        pytest.param(lambda: fatal_delay(DEFAULT, math.nan), id="rand-nan"),
        pytest.param(lambda: min_refresh_interval(0, DEFAULT), id="zero-lifetime"),
        pytest.param(lambda: slots_needed(300, DEFAULT, max_versions_per_day=0), id="zero-quota"),
    ],
)
def test_invalid_arguments_raise(call):
    with pytest.raises(ValueError):
        call()


# --------------------------------------------------------------------------- properties

rands = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@st.composite
def policies(draw):
    retry_min = draw(st.floats(0.01, 10.0))
    return RefreshPolicy(
        refresh_at=draw(st.floats(0.01, 0.99)),
        min_remaining=draw(st.floats(0.0, 600.0)),
        jitter=draw(st.floats(0.0, 0.5)),
        retry_min=retry_min,
        retry_max=retry_min * draw(st.floats(1.0, 1000.0)),
        fatal_retry=draw(st.floats(0.01, 3600.0)),
        min_interval=draw(st.floats(0.0, 5.0)),
    )


@st.composite
def tokens(draw):
    """(issued_at, expires_at, now): lifetimes from test-sized to a day, now anywhere around them."""
    issued = draw(st.floats(1e9, 2e9))
    # Short lifetimes are drawn as often as long ones: the rules change around min_remaining.
    lifetime = draw(st.one_of(st.floats(0.01, 120.0), st.floats(0.01, 86_400.0)))
    now = issued + draw(st.floats(-60.0, 1.5 * lifetime))
    return issued, issued + lifetime, now


def _tol(*times: float) -> float:
    """A few units in the last place of the largest time: room for rounding, nothing more."""
    return 8 * max(math.ulp(t) for t in times)


@given(tokens(), policies(), rands)
def test_refresh_is_never_in_the_past(token, policy, rand):
    issued, expires, now = token
    assert refresh_time(issued, expires, now, policy, rand) >= now


@given(tokens(), policies(), rands)
def test_refresh_is_never_after_a_future_deadline(token, policy, rand):
    issued, expires, now = token
    deadline = effective_deadline(issued, expires, policy)
    at = refresh_time(issued, expires, now, policy, rand)
    if deadline > now:
        assert at <= deadline
    assert at <= max(now, expires)


@given(tokens(), policies(), rands)
def test_refresh_is_within_jitter_of_plan_unless_clamped(token, policy, rand):
    issued, expires, now = token
    at = refresh_time(issued, expires, now, policy, rand)
    deadline = effective_deadline(issued, expires, policy)
    floor = max(now, issued + policy.min_interval)
    assume(floor < at < deadline)  # not clamped
    planned = min(issued + policy.refresh_at * (expires - issued), deadline)
    delay = planned - issued
    tol = _tol(expires)
    assert abs(at - planned) <= policy.jitter * delay + tol
    assert at == pytest.approx(issued + delay * (1 + policy.jitter * (2 * rand - 1)), abs=tol)


@given(tokens(), policies(), rands, rands)
def test_refresh_is_monotone_in_rand(token, policy, r1, r2):
    issued, expires, now = token
    lo, hi = sorted((r1, r2))
    assert refresh_time(issued, expires, now, policy, lo) <= refresh_time(issued, expires, now, policy, hi)


@given(tokens(), policies(), rands)
def test_refresh_respects_min_interval_unless_the_deadline_is_sooner(token, policy, rand):
    issued, expires, now = token
    at = refresh_time(issued, expires, now, policy, rand)
    assert at >= min(issued + policy.min_interval, effective_deadline(issued, expires, policy))


@given(tokens(), policies(), rands)
def test_refresh_of_a_new_token_is_no_sooner_than_min_refresh_interval(token, policy, rand):
    issued, expires, _ = token
    at = refresh_time(issued, expires, issued, policy, rand)
    assert at - issued >= min_refresh_interval(expires - issued, policy) - _tol(expires)


@given(tokens(), policies())
def test_min_refresh_interval_is_reached_at_the_low_end_of_the_jitter(token, policy):
    issued, expires, _ = token
    at = refresh_time(issued, expires, issued, policy, 0.0)
    assert at - issued == pytest.approx(min_refresh_interval(expires - issued, policy), abs=_tol(expires))


@given(st.floats(1e9, 2e9), st.floats(0.001, 3.0), st.floats(0.0, 1.0), policies())
def test_a_longer_token_is_never_due_sooner(issued, scale, growth, policy):
    # Lifetimes around min_remaining, where a fallback rule could jump backwards.
    lifetime = max(0.01, scale * policy.min_remaining)
    extra = growth * max(1.0, policy.min_remaining)
    short = effective_deadline(issued, issued + lifetime, policy) - issued
    long = effective_deadline(issued, issued + lifetime + extra, policy) - issued
    assert long >= short - _tol(issued + lifetime + extra)


@given(st.floats(1e9, 2e9), st.floats(0.01, 86_400.0), policies())
def test_min_remaining_is_kept_when_the_lifetime_allows_it(issued, lifetime, policy):
    assume(lifetime >= (1 + policy.refresh_at) * policy.min_remaining)
    expires = issued + lifetime
    assert refresh_time(issued, expires, issued, policy, 0.999) <= expires - policy.min_remaining + _tol(expires)


@given(st.floats(1e9, 2e9), st.floats(0.01, 600.0), policies())
def test_tokens_shorter_than_min_remaining_refresh_at_their_fraction(issued, lifetime, policy):
    policy = dataclasses.replace(policy, jitter=0.0, min_interval=0.0)
    assume(lifetime <= policy.min_remaining)
    expires = issued + lifetime
    at = refresh_time(issued, expires, issued, policy, 0.5)
    assert at - issued == pytest.approx(policy.refresh_at * lifetime, abs=_tol(expires))


@given(tokens(), policies())
def test_fresh_implies_not_expired_and_inside_deadline(token, policy):
    issued, expires, now = token
    if is_fresh(issued, expires, now, policy):
        assert now < expires
        assert now < effective_deadline(issued, expires, policy)


@given(tokens(), policies(), rands)
def test_fresh_means_a_refresh_is_not_due_yet_without_jitter(token, policy, rand):
    issued, expires, now = token
    steady = dataclasses.replace(policy, jitter=0.0, min_interval=0.0)
    assert is_fresh(issued, expires, now, steady) == (refresh_time(issued, expires, now, steady, rand) > now)


attempts = st.one_of(st.integers(0, 64), st.integers(0, 10**9))


@given(attempts, policies(), rands)
def test_backoff_stays_between_retry_min_and_retry_max(attempt, policy, rand):
    delay = backoff_delay(attempt, policy, rand)
    assert policy.retry_min <= delay <= policy.retry_max
    if attempt < 64:
        assert delay <= policy.retry_min * 2**attempt


@given(attempts, attempts, policies(), rands)
def test_backoff_grows_with_attempts(a1, a2, policy, rand):
    lo, hi = sorted((a1, a2))
    assert backoff_delay(lo, policy, rand) <= backoff_delay(hi, policy, rand)


@given(attempts, policies(), rands, rands)
def test_backoff_is_monotone_in_rand(attempt, policy, r1, r2):
    lo, hi = sorted((r1, r2))
    assert backoff_delay(attempt, policy, lo) <= backoff_delay(attempt, policy, hi)


@given(attempts, policies(), rands, st.floats(0.0, 1e6))
def test_backoff_honours_retry_after_up_to_the_ceiling(attempt, policy, rand, retry_after):
    ceiling = max(policy.retry_max, policy.fatal_retry)
    delay = backoff_delay(attempt, policy, rand, retry_after)
    assert delay >= min(retry_after, ceiling)
    assert delay >= backoff_delay(attempt, policy, rand)
    assert delay <= ceiling


@given(policies(), rands)
def test_fatal_delay_is_jittered_fatal_retry_never_below_retry_max(policy, rand):
    delay = fatal_delay(policy, rand)
    assert delay >= policy.retry_max
    if delay > policy.retry_max:
        low, high = policy.fatal_retry * (1 - policy.jitter), policy.fatal_retry * (1 + policy.jitter)
        assert low - 1e-9 <= delay <= high + 1e-9


@given(st.floats(0.01, 86_400.0), policies(), st.floats(1.0, 10_000.0))
def test_slots_needed_is_the_fewest_that_fit(lifetime, policy, max_versions):
    slots = slots_needed(lifetime, policy, max_versions)
    writes = writes_per_day(lifetime, policy)
    assert slots >= 1
    assert writes / slots <= max_versions
    if slots > 1:
        assert writes / (slots - 1) > max_versions
