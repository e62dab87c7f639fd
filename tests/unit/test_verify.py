"""syncd.verify: when a target is read back, and what a read-back means (tables)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from syncd.payload import TokenPayload
from syncd.stores.base import FatalStoreError, TransientStoreError
from syncd.verify import (
    MIN_VERIFY_GAP,
    judge,
    lost_by_error,
    next_after_check,
    next_after_failure,
    next_verify,
)

T = 1_800_000_000.0


@pytest.mark.parametrize(
    ("written", "refresh", "interval", "expected"),
    [
        (T, T + 150, "auto", T + 75),  # halfway to the refresh: one read per rotation
        (T + 100, T + 150, "auto", T + 125),  # a later write (retry): halfway from there
        (T, T + 150, 10.0, T + 10),
        (T + 145, T + 150, 10.0, None),  # the refresh comes first and writes anyway
        (T, T + 150, "off", None),
        (T, T + 0.4, "auto", None),  # too close: MIN_VERIFY_GAP reaches past the refresh
        (T, T + 2.0, "auto", T + 1.0),
        (T, T + 2.0, 0.1, T + MIN_VERIFY_GAP),  # never more often than MIN_VERIFY_GAP
        (T + 200, T + 150, "auto", None),  # already due: the run mints instead
    ],
)
def test_next_verify(written, refresh, interval, expected):
    got = next_verify(written, refresh, interval)
    assert got == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize(
    ("checked", "refresh", "interval", "expected"),
    [
        (T + 75, T + 150, "auto", None),  # "auto" is one read per rotation: this check was it
        (T + 140, T + 150, "auto", None),
        (T + 10, T + 150, 10.0, T + 20),  # a number keeps its period
        (T + 145, T + 150, 10.0, None),
        (T + 75, T + 150, "off", None),
    ],
)
def test_next_after_check(checked, refresh, interval, expected):
    got = next_after_check(checked, refresh, interval)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_auto_reads_back_once_per_rotation():
    """Following the schedule from a write to the refresh: one read-back, not one per halving of the gap."""
    written, refresh = T, T + 600  # a 20-minute token refreshed at half its life
    reads, at = 0, next_verify(written, refresh, "auto")
    while at is not None and at < refresh:
        reads += 1
        at = next_after_check(at, refresh, "auto")
    assert reads == 1


@pytest.mark.parametrize(
    ("failed", "issued", "refresh", "interval", "expected"),
    [
        (T + 75, T, T + 150, "auto", T + 112.5),  # the rotation's check failed: one retry, halfway to the refresh
        (T + 112.5, T, T + 150, "auto", None),  # the retry failed too: the next write will tell
        (T + 10, T, T + 150, "auto", T + 80),  # an early failure (a check after a retry's write) still retries
        (T + 149.8, T, T + 150, "auto", None),
        (T + 75, T, T + 150, 10.0, T + 85),  # a number keeps its period
        (T + 75, T, T + 150, "off", None),
        (T + 75, float("nan"), T + 150, "auto", None),
    ],
)
def test_next_after_failure(failed, issued, refresh, interval, expected):
    got = next_after_failure(failed, issued, refresh, interval)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_auto_retries_a_failed_read_back_once_per_rotation():
    """A store that stays unreachable: the check and one retry, not one attempt per halving of the gap."""
    issued = written = T
    refresh = T + 600
    attempts, at = 0, next_verify(written, refresh, "auto")
    while at is not None and at < refresh:
        attempts += 1
        at = next_after_failure(at, issued, refresh, "auto")
    assert attempts == 2


def p(token: str, *, credential: str = "calm", expires: float = T + 300) -> TokenPayload:
    return TokenPayload(
        credential=credential,
        access_token=SecretStr(token),
        issued_at=expires - 300,
        expires_at=expires,
        refresh_after=expires - 150,
    )


OURS = p("ours-token")


@pytest.mark.parametrize(
    ("stored", "implausible", "expected"),
    [
        (None, None, "not there any more"),
        (p("ours-token"), None, None),
        (p("other-token", credential="card"), None, "credential 'card'"),
        (p("planted-token", expires=T + 10 * 365 * 86400), "lifetime too long", "does not trust (lifetime too long)"),
        (p("newer-token", expires=T + 400), None, None),  # another writer's fresher token: not a loss
        (p("older-token", expires=T + 200), None, "older token"),
    ],
)
def test_judge(stored, implausible, expected):
    reason = judge(stored, OURS, implausible)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason
        for secret in ("ours-token", "other-token", "planted-token", "older-token"):
            assert secret not in reason


@pytest.mark.parametrize(
    ("exc", "lost"),
    [
        (FatalStoreError("x.json: not valid JSON", code="payload"), True),
        (FatalStoreError("x.json is a symbolic link", code="ELOOP"), True),
        (TransientStoreError("data and metadata disagree", code="metadata_stale"), True),
        (TransientStoreError("cannot reach Vault", code="connection"), False),
        (FatalStoreError("permission denied", code="AccessDeniedException"), False),
        (RuntimeError("bug"), False),
    ],
)
def test_lost_by_error(exc, lost):
    assert (lost_by_error(exc) is not None) is lost
