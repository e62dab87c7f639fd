"""Start-up adoption: hold a token the targets already store, instead of minting one.

At start-up (and for a credential a reload starts) each credential first reads its
targets and adopts a stored token that is still fresh, so restarting a daemon with
10,000 credentials does not stampede the IdP. A stored token that is valid but due
is held too, and served while the first mint is attempted.
"""

from __future__ import annotations

import asyncio

from syncd import logs, policy
from syncd.engine.rotation import Rotation
from syncd.engine.state import CredentialState, TargetState
from syncd.payload import TokenPayload, to_rfc3339

log = logs.get_logger("syncd.engine")


async def adopt_stored(rotation: Rotation, st: CredentialState, sem: asyncio.Semaphore) -> None:
    """Read every target of ``st`` (``sem`` bounds the reads in flight) and hold the best token found."""

    async def read(ts: TargetState) -> TokenPayload | None:
        async with sem:
            try:
                return await ts.store.read(ts.cfg.key, target=ts.cfg)
            except Exception as exc:
                log.warning("adopt_read", credential=st.name, target=ts.label, **logs.error_fields(exc))
                return None

    payloads = await asyncio.gather(*(read(ts) for ts in st.targets))
    now = rotation.clock()
    candidates: list[TokenPayload] = []
    for ts, payload in zip(st.targets, payloads, strict=True):
        if payload is None:
            continue
        if payload.credential != st.name:
            log.warning(
                "adopt_foreign",
                credential=st.name,
                target=ts.label,
                stored_credential=payload.credential,
                action="will overwrite",
            )
            continue
        reason = rotation.implausible(st, payload)
        if reason is not None:
            # Never served, never copied to the other targets: the first mint overwrites it.
            log.warning(
                "adopt_refused",
                credential=st.name,
                target=ts.label,
                stored_fingerprint=payload.fingerprint,
                reason=reason,
                action="will overwrite",
            )
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
        rotation.verified(st, ts, best, now)
    st.adopted = True
    st.state = "ok"
    log.info(
        "adopted",
        credential=st.name,
        fingerprint=best.fingerprint,
        expires_at=to_rfc3339(best.expires_at),
        targets_holding=len(holding),
        reason="fresh token in store",
    )
