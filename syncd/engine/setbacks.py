"""A mint that gave no usable token: a failure, or a token too short-lived to serve.

Both record what happened on the credential (its failure count, last error and outcome)
and when to mint again; the rotation (`rotation.Rotation.attempt_mint`) calls them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol

from syncd import logs, policy
from syncd.engine import decide
from syncd.engine.state import CredentialState, error_view
from syncd.metrics import Metrics
from syncd.payload import TokenPayload, to_rfc3339

log = logs.get_logger("syncd.engine")


class Rotation(Protocol):
    """What these need of `rotation.Rotation`: its clock, randomness and metrics, and holding a token."""

    clock: Callable[[], float]
    rng: random.Random
    metrics: Metrics

    def set_token(self, st: CredentialState, payload: TokenPayload) -> None: ...


def failed(rot: Rotation, st: CredentialState, exc: Exception, started: float) -> bool:
    """Record a mint that raised: its kind, the backoff to the next attempt (`decide.mint_retry`); False."""
    now = rot.clock()
    outcome = decide.mint_outcome(exc)
    st.mint_failures += 1
    st.last_mint_outcome = outcome
    st.last_error = error_view(exc)
    st.last_error["kind"] = outcome
    plan = decide.mint_retry(
        outcome,
        st.mint_failures - 1,
        st.policy,
        rot.rng.random(),
        now=now,
        retry_after=getattr(exc, "retry_after", None),
        held=st.token,
    )
    if plan.capped and plan.asked is not None:
        log.warning(
            "retry_after_capped",
            credential=st.name,
            asked=round(plan.asked, 3),
            used=round(plan.delay, 3),
            token_expires_at=to_rfc3339(st.token.expires_at) if st.token is not None else None,
            min_remaining=st.policy.min_remaining,
        )
    st.mint_retry_at = now + plan.delay
    rot.metrics.mints.labels(st.name, outcome).inc()
    log.error(
        "mint",
        credential=st.name,
        outcome=outcome,
        duration=round(now - started, 4),
        retry_in=round(plan.delay, 3),
        failures=st.mint_failures,
        serving_last_good=st.token is not None and not st.token.expired(now),
        **logs.error_fields(exc),
    )
    return False


def short(rot: Rotation, st: CredentialState, payload: TokenPayload, verdict: policy.MintVerdict, now: float) -> bool:
    """A token that cannot be served for ``min_remaining`` (or is older than the one held).

    Minting again at once would get the same answer from a caching IdP, so the next
    mint backs off like a transient failure; the token is still used when it is the
    freshest there is (`decide.short_token`). Returns whether it was taken.
    """
    st.mint_failures += 1
    st.last_mint_outcome = "transient"
    plan = decide.short_token(
        verdict, payload, st.token, now=now, attempt=st.mint_failures - 1, pol=st.policy, rand=rot.rng.random()
    )
    st.mint_retry_at = now + plan.delay
    left = payload.expires_at - now
    why = (
        f"with {max(left, 0.0):.1f}s left, less than min_remaining={st.policy.min_remaining:g}s"
        if verdict == "short"
        else "that expires before the token already held"
    )
    st.last_error = {
        "class": "ShortLivedToken",
        "kind": "transient",
        "message": (
            f"credential {st.name!r}: the IdP issued a token {why} (a caching IdP, or token_lifetime/"
            f"min_remaining do not match the IdP's tokens); {'serving it and ' if plan.take else ''}"
            "minting again with backoff"
        ),
    }
    rot.metrics.mints.labels(st.name, "transient").inc()
    log.warning(
        "mint_short",
        credential=st.name,
        verdict=verdict,
        fingerprint=payload.fingerprint,
        expires_at=to_rfc3339(payload.expires_at),
        expires_in=round(left, 3),
        min_remaining=st.policy.min_remaining,
        used=plan.take,
        retry_in=round(plan.delay, 3),
        failures=st.mint_failures,
    )
    if plan.take:
        st.mints += 1
        st.last_mint, st.adopted = now, False
        st.held = "minted"
        rot.set_token(st, payload)
    return plan.take
