"""Reading a credential's targets back between rotations (what counts as lost: `syncd.verify`).

A target found without the token the engine wrote is marked unwritten, so the next run
writes it again; a read that fails for an unknown reason is not a loss (the next write
will tell). The engine hands over every credential whose read-back is due at once
(`syncd.schedule.sweep`), and the reads go together, by store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from functools import partial

from syncd import logs, verify
from syncd.engine import decide
from syncd.engine.reads import read_targets
from syncd.engine.state import CredentialState, TargetState
from syncd.payload import TokenPayload

log = logs.get_logger("syncd.engine")

#: Why a credential must not take a stored payload (`Rotation.implausible`), or None.
Implausible = Callable[[CredentialState, TokenPayload], "str | None"]


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


#: Read-backs in flight at most (one sweep of the schedule can hold thousands with a numeric
#: ``verify_interval``); the file store reads its share in one thread, a batch at a time.
IN_FLIGHT = 64

Work = tuple[CredentialState, TargetState, TokenPayload]


async def verify_many(
    states: Iterable[CredentialState], clock: Callable[[], float], implausible: Implausible
) -> list[CredentialState]:
    """Read back every target of ``states`` whose check is due, together; the credentials that lost a token.

    The reads go by store in batches (`syncd.stores.batch`: one thread hop for many files,
    aiohttp GETs for Vault); a store with its own ``verify`` is asked target by target.
    """
    now = clock()
    work: list[Work] = []
    for st in states:
        token = st.token
        if token is None or token.expired(now):
            continue
        for ts in st.targets:
            if decide.verify_due(now, ts.verify_at, ts.stored_fingerprint, token):
                ts.verify_at = None
                work.append((st, ts, token))
    if not work:
        return []
    outcomes = await _problems(work, implausible)
    lost: dict[str, CredentialState] = {}
    for (st, ts, token), outcome in zip(work, outcomes, strict=True):
        if _settle(st, ts, token, outcome, clock):
            lost[st.name] = st
    return list(lost.values())


async def _problems(work: list[Work], implausible: Implausible) -> list[str | Exception | None]:
    """Each item's `verify.target_problem` (None: it serves the token), or the exception its read raised."""
    outcomes: list[str | Exception | None] = [None] * len(work)
    custom = [i for i, (_, ts, _) in enumerate(work) if getattr(ts.store, "verify", None) is not None]
    plain = [i for i, (_, ts, _) in enumerate(work) if getattr(ts.store, "verify", None) is None]
    if plain:
        stored = await read_targets([work[i][1] for i in plain], IN_FLIGHT)
        for i, got in zip(plain, stored, strict=True):
            st, _, token = work[i]
            if isinstance(got, Exception):
                outcomes[i] = got
            else:
                outcomes[i] = verify.judge_read(got, token, partial(implausible, st))
    if custom:
        slots = asyncio.Semaphore(IN_FLIGHT)

        async def ask(i: int) -> None:
            st, ts, token = work[i]
            async with slots:
                try:
                    outcomes[i] = await verify.target_problem(
                        ts.store, ts.cfg.key, ts.cfg, token, partial(implausible, st)
                    )
                except Exception as exc:  # one target's failure is that target's outcome
                    outcomes[i] = exc

        await asyncio.gather(*(ask(i) for i in custom))
    return outcomes


def _settle(
    st: CredentialState,
    ts: TargetState,
    token: TokenPayload,
    outcome: str | Exception | None,
    clock: Callable[[], float],
) -> bool:
    """Apply one read-back's outcome to its target; True when the target lost the token."""
    if isinstance(outcome, Exception):
        reason = verify.lost_by_error(outcome)
        if reason is None:
            # Unknown is not missing: the store is unreachable, which the next write will tell.
            log.warning("verify_read", credential=st.name, target=ts.label, **logs.error_fields(outcome))
            ts.verify_at = verify.next_after_failure(clock(), token.issued_at, token.refresh_after, st.verify_interval)
            return False
    else:
        reason = outcome
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
