"""Redact first, then truncate; credentials inside URLs are redacted wherever text is scrubbed.

Table-driven over every position of a secret relative to every truncation limit: a
secret that straddles a cut must not leave its first characters behind.
"""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import SecretStr

from syncd import logs
from syncd.oauth import MintError, MintRequest, mint

SECRET = "Straddle-Secret-0123456789abcdef"  # noqa: S105 - a test value
TOKEN_URL = "https://auth.example.test/token"


def prefixes(secret: str, shortest: int = 4) -> list[str]:
    return [secret[:n] for n in range(shortest, len(secret) + 1)]


def leaked_prefix(text: str, secret: str = SECRET) -> str | None:
    return next((p for p in reversed(prefixes(secret)) if p in text), None)


# --------------------------------------------------------------------------- logs.shorten


@pytest.mark.parametrize("limit", [40, 64, 100, 200, 300, 400])
def test_shorten_never_leaves_a_prefix_of_a_registered_secret(limit: int) -> None:
    logs.register_secret(SECRET)
    for start in range(0, limit + 1):
        text = "x" * start + SECRET + " tail"
        out = logs.shorten(text, limit)
        assert len(out) <= limit
        assert leaked_prefix(out) is None, (start, out)


def test_shorten_keeps_short_text_and_marks_the_cut() -> None:
    assert logs.shorten("short", 10) == "short"
    assert logs.shorten("a" * 20, 10) == "a" * 7 + "..."


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:pa55word@vault:8200/v1/x", "https://***@vault:8200/v1/x"),
        ("https://user:p@ss@idp.test/token", "https://***@idp.test/token"),
        ("see http://only-user@host:1/ here", "see http://***@host:1/ here"),
        (
            "https://idp.test/token?token=abc123&realm=vgs&client_secret=s3c#frag",
            "https://idp.test/token?token=***&realm=vgs&client_secret=***#frag",
        ),
        (
            "https://h/p?api_key=k1&sig=zz9&X-Amz-Signature=f00&page=2",
            "https://h/p?api_key=***&sig=***&X-Amz-Signature=***&page=2",
        ),
        ("https://h/p?password=pw&secret=s&access_token=t", "https://h/p?password=***&secret=***&access_token=***"),
        ("https://vault:8200/v1/secret/data/calm", "https://vault:8200/v1/secret/data/calm"),
        ("no url here, key=value", "no url here, key=value"),
    ],
)
def test_url_credentials_are_replaced_and_the_rest_stays(text: str, expected: str) -> None:
    assert logs.scrub_url(text) == expected
    assert logs.scrub_text(text) == expected


def test_url_in_a_structured_event_is_scrubbed() -> None:
    event = logs.redact(
        None, "debug", {"event": 'HTTP Request: POST https://u:hunter22@idp.test/token?sig=abcdef "HTTP/1.1 200"'}
    )
    assert "hunter22" not in event["event"] and "abcdef" not in event["event"]
    assert "idp.test/token" in event["event"]


# --------------------------------------------------------------------------- oauth error text


def _handler(body: dict[str, str], status: int = 401, reason: bytes | None = None) -> httpx.MockTransport:
    def respond(request: httpx.Request) -> httpx.Response:
        ext = {"reason_phrase": reason} if reason else {}
        return httpx.Response(status, content=json.dumps(body).encode(), extensions=ext)

    return httpx.MockTransport(respond)


async def _error_for(body: dict[str, str], status: int = 401, reason: bytes | None = None) -> MintError:
    req = MintRequest(credential="calm", token_url=TOKEN_URL, client_id="calm", client_secret=SecretStr(SECRET))
    async with httpx.AsyncClient(transport=_handler(body, status, reason)) as client:
        with pytest.raises(MintError) as info:
            await mint(client, req)
    return info.value


def _exposed(exc: MintError) -> str:
    return " | ".join(str(v) for v in (exc, exc.message, exc.error, exc.description, repr(exc.args)))


@pytest.mark.parametrize(("field", "limit"), [("error", 64), ("error_description", 200)])
async def test_idp_text_quoting_the_secret_across_the_cut_leaks_no_prefix(field: str, limit: int) -> None:
    """The IdP echoes the client secret so that it straddles the truncation limit, at every offset.

    No registry here: only oauth's own request redactor stands between the body and the message.
    """
    for start in range(max(0, limit - len(SECRET) - 4), limit + 1):
        body = {"error": "invalid_client", field: "e" * start + SECRET + " and more text after it"}
        exc = await _error_for(body)
        assert leaked_prefix(_exposed(exc)) is None, (field, start, _exposed(exc))


async def test_reason_phrase_quoting_the_secret_across_the_cut_leaks_no_prefix() -> None:
    for start in range(0, 41):
        reason = ("r" * start + SECRET).encode()
        exc = await _error_for({}, status=404, reason=reason)
        assert leaked_prefix(_exposed(exc)) is None, (start, _exposed(exc))


async def test_token_url_credentials_never_in_mint_errors() -> None:
    req = MintRequest(
        credential="calm",
        token_url="https://calm:url-pass-123@auth.example.test/token?client_secret=q-secret-456&realm=vgs",
        client_id="calm",
        client_secret=SecretStr(SECRET),
    )
    transport = httpx.MockTransport(lambda r: httpx.Response(404))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(MintError) as info:
            await mint(client, req)
    text = _exposed(info.value)
    assert "url-pass-123" not in text and "q-secret-456" not in text
    assert "https://***@auth.example.test/token?client_secret=***&realm=vgs" in text
