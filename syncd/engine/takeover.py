"""Several replicas: this replica's place for each credential, and a follower's wake (docs/ha.md).

Rank 0 rotates as a single replica does. A follower (rank k > 0) wakes at the stored
payload's ``refresh_after + k x takeover_delay`` (`decide.wake_at`), reads the targets
and either adopts the fresher token rank 0 (or an earlier rank) wrote there, or takes
over: no fresher token, so it mints and writes itself. What to do with what was read is
`decide.follower_step`'s answer; this module does the reads and records the outcome.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from syncd import logs
from syncd.config import Config
from syncd.engine import decide
from syncd.engine.adopt import trusted
from syncd.engine.state import CredentialState, TargetState
from syncd.payload import TokenPayload, to_rfc3339
from syncd.replicas.ranking import POD_LOCAL_STORES, effective_takeover_delay

if TYPE_CHECKING:  # the rotation calls into this module
    from syncd.engine.rotation import Rotation

log = logs.get_logger("syncd.engine")


def place(st: CredentialState, config: Config) -> None:
    """Set the credential's rank and takeover delay on this replica from ``config``.

    Only pod-local targets (file stores): no replica can see another's token, so
    every replica is rank 0 for it and mints it for its own pod.
    """
    daemon = config.daemon
    shared = any(
        (scfg := config.stores.get(t.store)) is not None and scfg.type not in POD_LOCAL_STORES for t in st.cfg.targets
    )
    st.ranked = daemon.replicas > 1 and shared
    st.rank = decide.credential_rank(st.name, daemon.replica or 0, daemon.replicas, shared=shared)
    lifetime = st.cfg.token_lifetime_for(config.defaults)
    st.takeover_delay = effective_takeover_delay(daemon.takeover_delay, lifetime) if st.ranked else 0.0


def due_at(st: CredentialState) -> float | None:
    """When this replica next acts for ``st``; None: at the held token's refresh time (rank 0)."""
    return decide.wake_at(
        st.token, rank=st.rank, delay=st.takeover_delay, pol=st.policy, waiting_since=st.waiting_since
    )


async def follow(rotation: Rotation, st: CredentialState) -> bool:
    """A follower's wake: read every target, adopt a fresher stored token. True: mint now (take over).

    A target that cannot be read counts as holding nothing fresher: the follower would
    rather mint once too often than let a token expire.
    """
    reads = await asyncio.gather(*(_read(st, ts) for ts in st.targets))
    now = rotation.clock()
    found: list[tuple[TargetState, TokenPayload]] = []
    for ts, (ok, payload) in zip(st.targets, reads, strict=True):
        if not ok:
            continue
        if payload is None or not trusted(rotation, st, ts, payload):
            # Nothing of ours there (gone, another credential's, untrusted): the write pass fills it.
            ts.stored_fingerprint = ts.stored_expires_at = None
            continue
        # What the target really holds: the write pass copies the token held to the others.
        ts.stored_fingerprint, ts.stored_expires_at = payload.fingerprint, payload.expires_at
        found.append((ts, payload))
    step = decide.follower_step(
        now, st.token, [p for _, p in found], rank=st.rank, delay=st.takeover_delay, pol=st.policy
    )
    best = step.adopt
    if best is not None:
        rotation.set_token(st, rotation.rebase(st, best))
        st.adopted = True
        if not step.mint:  # another replica's mint succeeded: this one's failed attempts are moot
            st.mint_failures, st.mint_retry_at = 0, None
        for ts, payload in found:
            if payload.fingerprint == best.fingerprint:
                ts.last_success = now
                ts.verify_at = None  # just read; the replica that wrote it reads it back
        rotation.metrics.adoptions.inc()
    log.info(
        "follow",
        credential=st.name,
        rank=st.rank,
        reads=len(st.targets),
        outcome="adopted" if best is not None else "takeover",
        fingerprint=best.fingerprint if best is not None else None,
        refresh_after=to_rfc3339(best.refresh_after) if best is not None else None,
        mint=step.mint,
    )
    return step.mint


async def _read(st: CredentialState, ts: TargetState) -> tuple[bool, TokenPayload | None]:
    """(read succeeded, what the target holds)."""
    try:
        return True, await ts.store.read(ts.cfg.key, target=ts.cfg)
    except Exception as exc:
        log.warning("follow_read", credential=st.name, target=ts.label, **logs.error_fields(exc))
        return False, None
