"""Start-up adoption: hold a token the targets already store, instead of minting one.

At start-up (and for a credential a reload starts) each credential first reads its
targets and adopts a stored token that is still fresh, so restarting a daemon with
10,000 credentials does not stampede the IdP. A stored token that is valid but due
is held too, and served while the first mint is attempted.

At start-up every target is read in batches per store (`syncd.engine.reads`: one thread
hop for 500 files, BatchGetSecretValue for 20 secrets), ``startup_concurrency`` reads in
flight at most, then each credential judges what its targets hold.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from syncd import logs, policy
from syncd.engine.reads import read_targets
from syncd.engine.state import CredentialState, TargetState
from syncd.payload import TokenPayload, to_rfc3339

if TYPE_CHECKING:  # rotation imports takeover, which judges stored payloads with `trusted` here
    from syncd.engine.rotation import Rotation

log = logs.get_logger("syncd.engine")


#: Credentials judged (or scheduled, `Engine._start_credentials`) between two turns of the event
#: loop: 10,000 credentials are seconds of CPU, which /livez, /metrics and the heartbeats must not
#: wait for in one block (at 100,000, longer than ``liveness_threshold``).
YIELD_EVERY = 256


async def adopt_all(rotation: Rotation, states: Sequence[CredentialState], concurrency: int) -> None:
    """Read every target of ``states`` (``concurrency`` reads in flight at most), then adopt per credential."""
    pairs = [(st, ts) for st in states for ts in st.targets]
    results = await read_targets([ts for _, ts in pairs], concurrency)
    found: dict[int, list[TokenPayload | None]] = defaultdict(list)
    for (st, ts), result in zip(pairs, results, strict=True):
        if isinstance(result, Exception):
            log.warning("adopt_read", credential=st.name, target=ts.label, **logs.error_fields(result))
        found[id(st)].append(None if isinstance(result, Exception) else result)
    # One logger for the whole pass: the module's is a lazy proxy that builds a logger at every call.
    judge_log = log.bind()
    for i, st in enumerate(states):
        if i and i % YIELD_EVERY == 0:
            await asyncio.sleep(0)
        adopt_found(rotation, st, found.get(id(st), []), judge_log)


def trusted(rotation: Rotation, st: CredentialState, ts: TargetState, payload: TokenPayload) -> bool:
    """May ``st`` adopt what ``ts`` holds? Another credential's payload or an implausible one is refused
    (logged with ``action="will overwrite"``): never served, never copied to the other targets, and
    the next write overwrites it."""
    if payload.credential != st.name:
        log.warning(
            "adopt_foreign",
            credential=st.name,
            target=ts.label,
            stored_credential=payload.credential,
            action="will overwrite",
        )
        return False
    reason = rotation.implausible(st, payload)
    if reason is not None:
        log.warning(
            "adopt_refused",
            credential=st.name,
            target=ts.label,
            stored_fingerprint=payload.fingerprint,
            reason=reason,
            action="will overwrite",
        )
        return False
    return True


def adopt_found(
    rotation: Rotation, st: CredentialState, payloads: Sequence[TokenPayload | None], logger: Any = log
) -> None:
    """Hold the best token ``st``'s targets hold (``payloads``: one per target, None when unread or empty)."""
    now = rotation.clock()
    candidates: list[TokenPayload] = []
    for ts, payload in zip(st.targets, payloads, strict=True):
        if payload is None:
            continue
        if not trusted(rotation, st, ts, payload):
            continue
        if not payload.expired(now):
            ts.stored_fingerprint, ts.stored_expires_at = payload.fingerprint, payload.expires_at
            ts.last_success = now
            candidates.append(payload)
    if not candidates:
        return
    best = max(candidates, key=lambda p: p.expires_at)
    if not policy.is_fresh(best.issued_at, best.expires_at, now, st.policy):
        # Still valid but due: keep serving it while the first mint is attempted.
        rotation.set_token(st, rotation.rebase(st, best))
        return
    rotation.set_token(st, rotation.rebase(st, best))
    holding = [ts for ts in st.targets if ts.stored_fingerprint == best.fingerprint]
    for ts in holding:
        rotation.read_holding(st, ts, now)  # this read was the rotation's read-back
    st.adopted = True
    st.state = "ok"
    logger.info(
        "adopted",
        credential=st.name,
        fingerprint=best.fingerprint,
        expires_at=to_rfc3339(best.expires_at),
        targets_holding=len(holding),
        reason="fresh token in store",
    )
