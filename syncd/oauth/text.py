"""Untrusted text from the IdP: JSON bodies, error codes, Retry-After, JWT times, cleaning and redaction."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, quote_plus

from syncd import logs
from syncd.oauth.model import (
    _MAX_ERROR_CODE,
    _MAX_SERVER_TEXT,
    MintError,
    MintRequest,
    _Reply,
)


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None (not JSON, not an object, or absurdly nested)."""
    if not body.strip():
        return None
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _looks_like_html(reply: _Reply) -> bool:
    ctype = reply.headers.get("content-type", "").lower()
    if "html" in ctype:
        return True
    head = (reply.body or b"")[:512].lstrip().lower()
    return head.startswith((b"<!doctype", b"<html", b"<head", b"<body", b"<?xml"))


def _error_code(doc: Mapping[str, Any] | None, redact: _Redactor) -> str | None:
    value = doc.get("error") if doc is not None else None
    if not isinstance(value, str) or not value.strip():
        return None
    return _clean(value, _MAX_ERROR_CODE, redact)


def _error_description(doc: Mapping[str, Any] | None, redact: _Redactor) -> str | None:
    value = doc.get("error_description") if doc is not None else None
    if not isinstance(value, str) or not value.strip():
        return None
    return _clean(value, _MAX_SERVER_TEXT, redact)


def _status_detail(status: int, error: str | None, description: str | None) -> str:
    if error and description:
        return f"{status} {error}: {description}"
    if error:
        return f"{status} {error}"
    return f"{status}, no OAuth error in the response"


def _number(value: object) -> float | None:
    """A JSON number or numeric string as a finite float; bools are not numbers here."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def _jwt_times(token: str) -> tuple[float | None, float | None] | None:
    """(exp, iat) of a JWS compact token, or None when the token is not a JWT.

    The signature is not verified: the values are only a lifetime hint when
    the response has no expires_in, and a skew figure for the logs.
    """
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        return None
    header = _b64url_json(parts[0])
    payload = _b64url_json(parts[1])
    if header is None or payload is None:
        return None
    return _number(payload.get("exp")), _number(payload.get("iat"))


def _b64url_json(segment: str) -> dict[str, Any] | None:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return None
    return _json_object(raw)


def _retry_after(reply: _Reply) -> float | None:
    """Retry-After as seconds from now: delay-seconds or an HTTP date; past dates give 0, nonsense None."""
    value = reply.headers.get("retry-after")
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    seconds = _number(text) if text.lstrip("+-").replace(".", "", 1).isdigit() else None
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 5322 says UTC with unknown origin
        when = when.replace(tzinfo=UTC)
    try:
        delay = when.timestamp() - reply.received_at
    except (OverflowError, OSError, ValueError):
        return None
    return max(0.0, delay) if math.isfinite(delay) else None


_VSCHAR_RE = re.compile(r"[\x20-\x7e]*")


def _is_vschar(text: str) -> bool:
    # One regex pass instead of a per-character generator: tokens are often ~1 KB JWTs.
    return _VSCHAR_RE.fullmatch(text) is not None


def _clean(
    text: str, limit: int, redact: Callable[[str], str] | None = None, *, scrub: Callable[[str], str] = logs.scrub_text
) -> str:
    """Server text made safe for a one-line log: secrets out, control/format chars to spaces, then truncate.

    Redaction runs on the whole text before anything else: once a secret is cut in two
    (or split by a control character turned into a space) it is no longer recognisable.
    """
    if redact is not None:
        text = redact(text)
    cleaned = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text)
    return logs.shorten(" ".join(cleaned.split()), limit, scrub=scrub)


@functools.lru_cache(maxsize=4096)
def _display_url(url: str) -> str:
    """The URL for messages: no userinfo, no secret query values, no control characters.

    Userinfo and secret-looking query parameters are replaced (``https://***@host/p?token=***``)
    rather than dropped, so the operator still sees that the configured URL carries them.
    """
    # The URL comes from the config, not from a server: only its own credentials need
    # hiding, and this runs on every mint, so skip the full scan for registered secrets
    # and keep the answer (a pure function of the configured URL).
    return _clean(url, 300, scrub=logs.scrub_url) or "''"


def _describe_exc(exc: Exception) -> str:
    detail = _clean(str(exc), _MAX_SERVER_TEXT)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


class _Redactor:
    """Last line of defence: removes secrets from text that may echo them (server descriptions, OS errors).

    The messages built here never interpolate a secret; this guards against a
    server or proxy that echoes the request back.
    """

    def __init__(self, needles: tuple[str, ...]) -> None:
        self._needles = tuple(sorted({n for n in needles if n}, key=len, reverse=True))

    @classmethod
    def for_request(cls, req: MintRequest, headers: Mapping[str, str]) -> _Redactor:
        secret = req.client_secret.get_secret_value()
        needles = [secret, quote_plus(secret, safe=""), quote(secret, safe="")]
        if req.client_assertion is not None:
            needles.append(req.client_assertion.get_secret_value())
        auth = headers.get("Authorization")
        if auth:
            needles += [auth, auth.removeprefix("Basic ")]
        return cls(tuple(needles))

    def plus(self, *more: str) -> _Redactor:
        return _Redactor(self._needles + more)

    def __call__(self, text: str) -> str:
        for needle in self._needles:
            text = text.replace(needle, "***")
        return text


def _redacted(exc: MintError, redact: _Redactor) -> MintError:
    """A copy of ``exc`` with every text field passed through ``redact``."""
    return type(exc)(
        redact(exc.message),
        credential=exc.credential,
        status=exc.status,
        error=redact(exc.error) if exc.error is not None else None,
        description=redact(exc.description) if exc.description is not None else None,
        retry_after=exc.retry_after,
    )
