"""policy.implausible: which foreign payloads may be adopted (a table, as for the refresh rule)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic import SecretStr

from syncd import policy
from syncd.payload import TokenPayload

NOW = 1_800_000_000.0
DAY = 86_400.0
YEAR = 365 * DAY


def payload(
    *,
    credential: str = "calm",
    issued: float = -10.0,
    life: float = 300.0,
    token: str = "tok-abc",
    fingerprint: str = "",
) -> TokenPayload:
    return TokenPayload(
        credential=credential,
        access_token=SecretStr(token),
        issued_at=NOW + issued,
        expires_at=NOW + issued + life,
        refresh_after=NOW + issued + life / 2,
        fingerprint=fingerprint,
    )


CASES = [
    # (description, payload, seen_lifetime, max_lifetime, expected reason fragment or None)
    ("a token like ours", payload(), 300.0, DAY, None),
    ("before the first mint, within max_lifetime", payload(life=3600.0), None, DAY, None),
    ("rounding of a peer's times", payload(life=300.9), 300.0, DAY, None),
    ("another credential", payload(credential="other"), 300.0, DAY, "names credential 'other'"),
    ("edited fingerprint", payload(fingerprint="sha256:0000000000000000"), 300.0, DAY, "fingerprint does not match"),
    ("issued within the skew", payload(issued=50.0), 300.0, DAY, None),
    ("issued in the future", payload(issued=3600.0), 300.0, DAY, "in the future"),
    ("expires before it was issued", payload(life=-5.0), 300.0, DAY, "not after issued_at"),
    ("zero lifetime", payload(life=0.0), 300.0, DAY, "not after issued_at"),
    ("ten years, nothing minted yet", payload(life=10 * YEAR), None, DAY, "longer than max_lifetime"),
    ("ten years, after a mint", payload(life=10 * YEAR), 300.0, DAY, "longer than the tokens the IdP issues"),
    ("an hour where the IdP issues 5 minutes", payload(life=3600.0), 300.0, DAY, "(300s)"),
    ("just over max_lifetime", payload(life=DAY + 1), None, DAY, "max_lifetime"),
    ("seen lifetime wins over max_lifetime", payload(life=2 * DAY), 2 * DAY, DAY, None),
]


@pytest.mark.parametrize(("what", "stored", "seen", "max_life", "expected"), CASES, ids=[c[0] for c in CASES])
def test_implausible_table(
    what: str, stored: TokenPayload, seen: float | None, max_life: float, expected: str | None
) -> None:
    reason = policy.implausible(stored, credential="calm", now=NOW, max_lifetime=max_life, seen_lifetime=seen)
    if expected is None:
        assert reason is None, what
    else:
        assert reason is not None and expected in reason, (what, reason)
        assert "tok-abc" not in reason  # the reason goes to the log: never the token


def test_non_finite_times_are_refused() -> None:
    stored = replace(payload(), expires_at=float("inf"))
    assert policy.implausible(stored, credential="calm", now=NOW, max_lifetime=DAY) is not None
