"""Reading a credential's targets back between rotations (what counts as lost: `syncd.verify`).

A target found without the token the engine wrote is marked unwritten, so the next run
writes it again; a read that fails for an unknown reason is not a loss (the next write
will tell).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from syncd import logs, verify
from syncd.engine import decide
from syncd.engine.state import CredentialState, TargetState
from syncd.payload import TokenPayload

log = logs.get_logger("syncd.engine")

Implausible = Callable[[TokenPayload], "str | None"]


def plan_next(st: CredentialState, ts: TargetState, payload: TokenPayload, at: float) -> None:
    """The target holds ``payload`` as of ``at``: plan its next read-back, end a "missing" episode."""
    refresh = st.token.refresh_after if st.token is not None else payload.refresh_after
    ts.verify_at = verify.next_verify(at, refresh, st.verify_interval)
    if ts.missing is not None:
        since = ts.missing_since if ts.missing_since is not None else at
        log.info("target_restored", credential=st.name, target=ts.label, missing_for=round(at - since, 3))
        ts.missing = ts.missing_since = None


def plan_after_read(st: CredentialState, ts: TargetState, at: float) -> None:
    """The target was read at ``at`` and holds the held token (start-up adoption): that read was a check.

    With ``auto`` (one read per rotation) it was this rotation's read-back, so nothing more until
    the next write plans one (`verify.next_after_check`). Planned from the adoption's time as after
    a write, 100,000 adopted credentials read every target again within half a refresh interval:
    twice the rotations' own reads, in the minutes after start-up.
    """
    refresh = st.token.refresh_after if st.token is not None else at
    ts.verify_at = verify.next_after_check(at, refresh, st.verify_interval)


async def verify_targets(st: CredentialState, clock: Callable[[], float], implausible: Implausible) -> bool:
    """Read back the targets whose check is due; True when one was found without its token."""
    token = st.token
    now = clock()
    if token is None or token.expired(now):
        return False
    due = [ts for ts in st.targets if decide.verify_due(now, ts.verify_at, ts.stored_fingerprint, token)]
    if not due:
        return False
    found = await asyncio.gather(*(_verify_target(st, ts, token, clock, implausible) for ts in due))
    return any(found)


async def _verify_target(
    st: CredentialState,
    ts: TargetState,
    token: TokenPayload,
    clock: Callable[[], float],
    implausible: Implausible,
) -> bool:
    ts.verify_at = None
    try:
        reason = await verify.target_problem(ts.store, ts.cfg.key, ts.cfg, token, implausible)
    except Exception as exc:
        reason = verify.lost_by_error(exc)
        if reason is None:
            # Unknown is not missing: the store is unreachable, which the next write will tell.
            log.warning("verify_read", credential=st.name, target=ts.label, **logs.error_fields(exc))
            ts.verify_at = verify.next_after_failure(clock(), token.issued_at, token.refresh_after, st.verify_interval)
            return False
    now = clock()
    if ts.stored_fingerprint != token.fingerprint:
        return False  # a run wrote (or failed) meanwhile: what was read is already out of date
    if reason is None:
        ts.verify_at = verify.next_after_check(now, token.refresh_after, st.verify_interval)
        return False
    ts.missing, ts.missing_since = reason, now
    ts.stored_fingerprint, ts.stored_expires_at, ts.retry_at = None, None, None
    log.warning(
        "target_missing",
        credential=st.name,
        target=ts.label,
        fingerprint=token.fingerprint,
        reason=reason,
        action="rewrite",
    )
    return True
