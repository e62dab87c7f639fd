"""Reading targets back between rotations: did the store lose what syncd wrote?

A store can lose a token without syncd writing anything: a Vault dev server
restarted empty, a secret or parameter deleted by hand, a Secrets Manager slot
or its index document removed, a file deleted. A token lives for minutes, so a
target that lost one would stay empty until the next rotation; for a 20-minute
token that is ten minutes of consumers failing. So the engine reads each target
back once between a write and the next refresh and, when the token is gone,
marks the target missing (``/readyz`` names it) and writes the held token again
at once.

``next_verify`` is the schedule (pure, no clock read); ``target_problem`` is the
one read. A store may implement ``verify(key, payload, *, target)`` returning the
reason the target does not serve ``payload`` (or None): the AWS stores do, for
``raw`` values (which ``read`` cannot judge) and for the slot index document.
Other stores are checked with ``read``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from syncd.config import TargetConfig
    from syncd.payload import TokenPayload
    from syncd.stores.base import Store

Interval = float | Literal["auto", "off"]

#: Never read a target back more often than this, whatever the token's lifetime.
MIN_VERIFY_GAP = 0.5


def next_verify(written_at: float, refresh_after: float, interval: Interval) -> float | None:
    """When to read a target back after a successful write (or a check) at ``written_at``.

    ``auto``: halfway to the next refresh, once per rotation, so the cost is one read per
    write and a loss is repaired at most half a refresh interval late. A number: every
    ``interval`` seconds, for tighter detection at a known read cost. None when there is
    nothing to do before the refresh (which writes every target anyway) or when ``off``.
    """
    if interval == "off" or not (math.isfinite(written_at) and math.isfinite(refresh_after)):
        return None
    gap = (refresh_after - written_at) / 2 if interval == "auto" else float(interval)
    at = written_at + max(gap, MIN_VERIFY_GAP)
    return at if at < refresh_after else None


#: Store error codes that mean "the value there is not the token syncd wrote", not "cannot read":
#: not a syncd payload (an edited or foreign value), a value whose fingerprint does not match
#: (Vault), a file replaced by a symbolic link (file store).
LOST_CODES = frozenset({"payload", "metadata_stale", "ELOOP"})


def next_after_check(checked_at: float, refresh_after: float, interval: Interval) -> float | None:
    """When to read a target back again after a check at ``checked_at`` found it holding the token.

    ``auto`` means one read per rotation: the check just made was it, so nothing more until the
    next write plans one (``next_verify`` from the check's time would halve the remaining gap
    again and again: about log2(interval / MIN_VERIFY_GAP) reads per rotation, ten for a
    20-minute token). A number keeps its period.
    """
    if interval == "auto":
        return None
    return next_verify(checked_at, refresh_after, interval)


#: After a read-back that failed for an unknown reason, "auto" tries once more only while the
#: failure came before this fraction of the way from the token's issue to its refresh: the
#: rotation's check (at half) gets one retry (at three quarters), and the retry none.
RETRY_BEFORE_FRACTION = 0.75


def next_after_failure(failed_at: float, issued_at: float, refresh_after: float, interval: Interval) -> float | None:
    """When to read a target back again after a read-back failed for an unknown reason (store unreachable).

    ``auto``: one retry per rotation, halfway from the failure to the refresh, and only for a
    failure in the first three quarters of the refresh interval (`RETRY_BEFORE_FRACTION`). A
    store that stays down so gets at most two read attempts per rotation, not one per halving
    of the remaining gap (about log2(interval / MIN_VERIFY_GAP)); the next write tells anyway.
    A number keeps its period.
    """
    if interval != "auto":
        return next_verify(failed_at, refresh_after, interval)
    if not (math.isfinite(issued_at) and math.isfinite(refresh_after)):
        return None
    if failed_at >= issued_at + RETRY_BEFORE_FRACTION * (refresh_after - issued_at):
        return None
    return next_verify(failed_at, refresh_after, interval)


def lost_by_error(exc: BaseException) -> str | None:
    """The reason a failed read-back still shows a loss (see `LOST_CODES`), or None for "unknown"."""
    code = getattr(exc, "code", None)
    if code in LOST_CODES:
        return f"what it holds is not the token syncd wrote ({getattr(exc, 'message', None) or exc})"
    return None


def judge(stored: TokenPayload | None, ours: TokenPayload, implausible: str | None) -> str | None:
    """Whether what a target holds (``stored``) means it lost ``ours`` (pure; table-tested).

    A fresher, plausible token of the same credential is not a loss: another writer (a
    second replica) rotated it, and overwriting it would shorten what consumers hold.
    ``implausible`` is policy.implausible's verdict on ``stored``.
    """
    if stored is None:
        return "the token is not there any more (deleted, or the store restarted empty)"
    if stored.fingerprint == ours.fingerprint:
        return None
    if stored.credential != ours.credential:
        return f"it holds a payload of credential {stored.credential!r}"
    if implausible is not None:
        return f"it holds a token syncd does not trust ({implausible})"
    if stored.expires_at > ours.expires_at:
        return None
    return f"it holds an older token ({stored.fingerprint}) than the one syncd wrote"


async def target_problem(
    store: Store,
    key: str,
    target: TargetConfig,
    payload: TokenPayload,
    implausible: Callable[[TokenPayload], str | None],
) -> str | None:
    """Why the target no longer serves ``payload`` to consumers, or None. A failed read raises."""
    custom = getattr(store, "verify", None)
    if custom is not None:
        reason: str | None = await custom(key, payload, target=target)
        return reason
    return judge_read(await store.read(key, target=target), payload, implausible)


def judge_read(
    stored: TokenPayload | None, ours: TokenPayload, implausible: Callable[[TokenPayload], str | None]
) -> str | None:
    """`judge` a target's read: ``implausible`` is asked only about a payload that is there."""
    return judge(stored, ours, implausible(stored) if stored is not None else None)


__all__ = [
    "LOST_CODES",
    "MIN_VERIFY_GAP",
    "RETRY_BEFORE_FRACTION",
    "judge",
    "judge_read",
    "lost_by_error",
    "next_after_check",
    "next_after_failure",
    "next_verify",
    "target_problem",
]
