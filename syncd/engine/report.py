"""What the engine shows of its credentials: the gauges, /status and /readyz. Never a token."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from syncd.engine import decide
from syncd.engine.state import CredentialState
from syncd.metrics import Metrics
from syncd.payload import to_rfc3339


def publish(metrics: Metrics, st: CredentialState) -> None:
    """Set the credential's gauges from its state (after a run, at start-up)."""
    m = metrics
    m.consecutive_failures.labels(st.name).set(st.consecutive_failures)
    if st.token is not None:
        m.token_expiry.labels(st.name).set(st.token.expires_at)
        m.token_lifetime.labels(st.name).set(st.token.lifetime)
    for ts in st.targets:
        if ts.stored_expires_at is not None:
            m.target_token_expiry.labels(st.name, ts.label).set(ts.stored_expires_at)
        if ts.last_success is not None:  # also a token adopted at start-up (a verified read)
            m.target_last_success.labels(st.name, ts.label).set(ts.last_success)


def credential_ready(st: CredentialState, now: float) -> bool:
    """Every target of the credential holds an unexpired token."""
    return all(decide.target_ready(ts.stored_expires_at, now) for ts in st.targets)


def status(credentials: Iterable[CredentialState], now: float, started_at: float) -> dict[str, Any]:
    """/status: per credential state, never a token."""
    creds = []
    for st in credentials:
        tok = st.token
        creds.append(
            {
                "name": st.name,
                "state": decide.shown_state(st.state, tok, now),
                "healthy": credential_ready(st, now),
                "token_url": st.cfg.token_url,
                "fingerprint": tok.fingerprint if tok else None,
                "issued_at": to_rfc3339(tok.issued_at) if tok else None,
                "expires_at": to_rfc3339(tok.expires_at) if tok else None,
                "expires_in": round(tok.expires_at - now, 3) if tok else None,
                "refresh_after": to_rfc3339(tok.refresh_after) if tok else None,
                "last_mint": to_rfc3339(st.last_mint) if st.last_mint else None,
                "minting_since": to_rfc3339(st.minting_since) if st.minting_since else None,
                "waiting_for_slot_since": to_rfc3339(st.slot_wait_since) if st.slot_wait_since else None,
                "adopted": st.adopted,
                "held": st.held,
                "rank": st.rank,
                "next_refresh": to_rfc3339(st.next_run) if st.next_run else None,
                "rearmed": st.rearmed,
                "last_rearmed": to_rfc3339(st.last_rearmed) if st.last_rearmed else None,
                "consecutive_failures": st.consecutive_failures,
                "last_error": st.last_error,
                "targets": [
                    {
                        "target": ts.label,
                        "store": ts.cfg.store,
                        "key": ts.cfg.key,
                        "fingerprint": ts.stored_fingerprint,
                        "stored_expires_at": to_rfc3339(ts.stored_expires_at) if ts.stored_expires_at else None,
                        "last_success": to_rfc3339(ts.last_success) if ts.last_success else None,
                        "failures": ts.failures,
                        "last_error": ts.last_error,
                        "fresh": decide.target_ready(ts.stored_expires_at, now),
                        "missing": ts.missing,
                        "missing_since": to_rfc3339(ts.missing_since) if ts.missing_since else None,
                    }
                    for ts in st.targets
                ],
            }
        )
    return {"now": to_rfc3339(now), "started_at": to_rfc3339(started_at), "credentials": creds}


def not_ready(credentials: Iterable[CredentialState], now: float) -> list[dict[str, Any]]:
    """Every credential/target without an unexpired token (for /readyz)."""
    out = []
    for st in credentials:
        for ts in st.targets:
            if decide.target_ready(ts.stored_expires_at, now):
                continue
            out.append(
                {
                    "credential": st.name,
                    "target": ts.label,
                    "reason": decide.not_ready_reason(ts.stored_expires_at, ts.missing),
                    "state": st.state,
                    "last_error": (ts.last_error or st.last_error or {}).get("message"),
                }
            )
    return out
