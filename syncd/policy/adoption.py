"""Whether a payload found in a target is plausible enough to adopt instead of minting.

Whether it is still fresh enough to adopt is the refresh rule's (`syncd.policy.refresh.is_fresh`).
"""

from __future__ import annotations

import math

from syncd.payload import TokenPayload, fingerprint

#: How far in the future a foreign payload's ``issued_at`` may lie: another host's clock
#: may run a little ahead of ours, a planted or corrupted payload's much further.
ADOPT_CLOCK_SKEW = 60.0


def implausible(
    payload: TokenPayload,
    *,
    credential: str,
    now: float,
    max_lifetime: float,
    seen_lifetime: float | None = None,
    skew: float = ADOPT_CLOCK_SKEW,
) -> str | None:
    """Why a payload found in a target must not be adopted, or None when it may be.

    Adopting is trusting: the token would be served (and copied to every other target)
    until its ``expires_at``. A payload written by a buggy or hostile writer, or edited by
    hand, could claim ten more years of life for a token revoked long ago. So a foreign
    payload is adopted only when it looks like something this credential's IdP issues:

    * it names this credential;
    * its fingerprint is the token's (a truncated or edited value is not);
    * it was not issued in the future beyond ``skew`` (hosts' clocks differ a little);
    * it expires after it was issued;
    * it does not live longer than the longest lifetime this process has minted for the
      credential (``seen_lifetime``, with a 5 % / 1 s allowance for clock rounding), or,
      before the first mint, than ``max_lifetime``.

    The result is the reason, written for the log (never the token).
    """
    if payload.credential != credential:
        return f"it names credential {payload.credential!r}, not {credential!r}"
    if payload.fingerprint != fingerprint(payload.access_token.get_secret_value()):
        return "its fingerprint does not match its token (a truncated or edited value)"
    if not (math.isfinite(payload.issued_at) and math.isfinite(payload.expires_at)):
        return "its issued_at or expires_at is not a finite time"
    if payload.issued_at > now + skew:
        return f"issued_at is {payload.issued_at - now:.0f}s in the future (more than the allowed {skew:g}s skew)"
    if payload.expires_at <= payload.issued_at:
        return "expires_at is not after issued_at"
    lifetime = payload.expires_at - payload.issued_at
    if seen_lifetime is not None and seen_lifetime > 0:
        bound = seen_lifetime + max(1.0, 0.05 * seen_lifetime)
        if lifetime > bound:
            return (
                f"its lifetime ({lifetime:.0f}s) is longer than the tokens the IdP issues for this credential "
                f"({seen_lifetime:.0f}s)"
            )
    elif lifetime > max_lifetime:
        return f"its lifetime ({lifetime:.0f}s) is longer than max_lifetime ({max_lifetime:.0f}s)"
    return None
