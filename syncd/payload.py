"""The token payload every target receives, and its parsing.

One module owns the wire format so the daemon, the stores, ``syncd inspect``
and the consumer reader can never disagree about it. Times are float epoch
seconds inside the process (cheap to compare, easy to property-test) and UTC
RFC 3339 strings on the wire.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import SecretStr

PAYLOAD_VERSION = 1

#: Two expiries of one token closer than this are the same expiry: stored times keep
#: milliseconds, and a caching IdP's repeated answers differ by the round trip.
EXPIRY_SLACK = 1.0
Format = Literal["json", "raw"]


class PayloadError(ValueError):
    """A stored value is not a syncd payload (corrupt, foreign, or truncated)."""


def fingerprint(token: str) -> str:
    """Identify a token in logs and metadata without revealing it."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:16]


def to_rfc3339(ts: float) -> str:
    """UTC with milliseconds and a ``Z`` suffix, e.g. ``2026-11-22T21:35:00.250Z``.

    Milliseconds because whole seconds would misstate a short token's remaining
    lifetime by up to a second (a third of a 3-second test token). jq's
    ``fromdate`` wants whole seconds: ``sub("\\.[0-9]+Z$"; "Z") | fromdate``.
    """
    text = datetime.fromtimestamp(round(ts, 3), UTC).isoformat(timespec="milliseconds")
    return text[:-6] + "Z"  # "+00:00" -> "Z"


def holds_token(fingerprint: str | None, expires_at: float | None, token: TokenPayload) -> bool:
    """Whether a place holding (``fingerprint``, ``expires_at``) already has ``token``.

    Fingerprint alone is not enough: a caching IdP answers with the same token and a
    later expiry, and a copy left with the old expiry looks expired while the token is valid.
    """
    return fingerprint == token.fingerprint and expires_at is not None and expires_at >= token.expires_at - EXPIRY_SLACK


def from_rfc3339(value: str) -> float:
    """Parse an RFC 3339 time; a naive time is taken as UTC."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


@dataclass(frozen=True, slots=True)
class TokenPayload:
    """What syncd writes for one credential. ``repr`` never shows the token."""

    credential: str
    access_token: SecretStr
    issued_at: float
    expires_at: float
    refresh_after: float
    token_type: str = "Bearer"  # noqa: S105 - a scheme name
    scope: str | None = None
    fingerprint: str = field(default="")
    version: int = PAYLOAD_VERSION

    def __post_init__(self) -> None:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", fingerprint(self.access_token.get_secret_value()))

    @property
    def lifetime(self) -> float:
        return max(self.expires_at - self.issued_at, 0.0)

    def remaining(self, now: float) -> float:
        return self.expires_at - now

    def remaining_fraction(self, now: float) -> float:
        life = self.lifetime
        return (self.expires_at - now) / life if life > 0 else 0.0

    def expired(self, now: float) -> bool:
        return now >= self.expires_at

    def public_dict(self) -> dict[str, Any]:
        """Every field but the token: safe for logs, /status, metadata."""
        return {
            "version": self.version,
            "credential": self.credential,
            "token_type": self.token_type,
            "scope": self.scope,
            "issued_at": to_rfc3339(self.issued_at),
            "expires_at": to_rfc3339(self.expires_at),
            "refresh_after": to_rfc3339(self.refresh_after),
            "fingerprint": self.fingerprint,
        }

    def to_dict(self) -> dict[str, Any]:
        """The document of docs/design.md "Payload", token included (for stores only)."""
        doc = self.public_dict()
        out: dict[str, Any] = {
            "version": doc["version"],
            "credential": doc["credential"],
            "access_token": self.access_token.get_secret_value(),
        }
        out.update({k: v for k, v in doc.items() if k not in out})
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def render(self, fmt: Format) -> str:
        """The stored text: the JSON document, or the bare token for ``raw``."""
        return self.access_token.get_secret_value() if fmt == "raw" else self.to_json()

    @classmethod
    def from_dict(cls, doc: Any, *, source: str = "payload") -> TokenPayload:
        """Validate a stored document; errors name the source and field, never the token."""
        if not isinstance(doc, dict):
            raise PayloadError(f"{source}: expected a JSON object, got {type(doc).__name__}")
        missing = [k for k in ("credential", "access_token", "issued_at", "expires_at") if not doc.get(k)]
        if missing:
            raise PayloadError(f"{source}: missing field(s) {', '.join(missing)}")
        if doc.get("version", PAYLOAD_VERSION) != PAYLOAD_VERSION:
            raise PayloadError(f"{source}: unsupported payload version {doc.get('version')!r}")
        token = doc["access_token"]
        if not isinstance(token, str):
            raise PayloadError(f"{source}: access_token is not a string")
        try:
            issued = from_rfc3339(str(doc["issued_at"]))
            expires = from_rfc3339(str(doc["expires_at"]))
            refresh = (
                from_rfc3339(str(doc["refresh_after"])) if doc.get("refresh_after") else issued + (expires - issued) / 2
            )
        except ValueError as exc:
            raise PayloadError(f"{source}: bad timestamp ({exc})") from None
        fp = fingerprint(token)
        if doc.get("fingerprint") and doc["fingerprint"] != fp:
            raise PayloadError(f"{source}: fingerprint does not match the token (truncated or edited value)")
        scope = doc.get("scope")
        return cls(
            credential=str(doc["credential"]),
            access_token=SecretStr(token),
            issued_at=issued,
            expires_at=expires,
            refresh_after=refresh,
            token_type=str(doc.get("token_type") or "Bearer"),
            scope=str(scope) if scope else None,
            fingerprint=fp,
        )

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "payload") -> TokenPayload:
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PayloadError(
                f"{source}: not valid JSON ({exc.__class__.__name__} at {getattr(exc, 'pos', '?')})"
            ) from None
        return cls.from_dict(doc, source=source)

    @classmethod
    def from_metadata(cls, token: str, meta: dict[str, Any], *, source: str = "payload") -> TokenPayload:
        """Rebuild a payload from a bare token plus the public fields kept beside it (``raw`` format)."""
        doc = dict(meta)
        doc["access_token"] = token
        return cls.from_dict(doc, source=source)


SLOTS_INDEX_FIELD = "slots"


def slot_index_doc(keys: list[str]) -> dict[str, Any]:
    """The small document at ``<key>`` that tells readers where the slots are."""
    return {"slots": len(keys), "keys": list(keys)}


def is_slot_index(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and "access_token" not in doc
        and isinstance(doc.get("keys"), list)
        and SLOTS_INDEX_FIELD in doc
    )
