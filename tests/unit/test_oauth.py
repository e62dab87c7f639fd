"""Unit tests for the minting rules (docs/design.md "Minting rules"), against httpx.MockTransport: no network."""

from __future__ import annotations

import base64
import json
import pickle
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from syncd import __version__
from syncd.oauth import (
    MAX_BODY,
    FatalMintError,
    MintError,
    MintRequest,
    Token,
    TransientMintError,
    _basic_authorization,
    build_http_client,
    endpoint_origin,
    mint,
)
from syncd.payload import fingerprint

TOKEN_URL = "https://auth.example.test/auth/realms/vgs/protocol/openid-connect/token"
SECRET = "S3cr3t-Value_do-not-LEAK"
TOKEN = "at-SENSITIVE-0123456789abcdef"
T0 = 1_800_000_000.0

Handler = Callable[[httpx.Request], httpx.Response]


class FakeClock:
    """A clock the transport can move, to tell send time from receive time."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.reads: list[float] = []

    def __call__(self) -> float:
        self.reads.append(self.now)
        return self.now


def make_req(**kw: Any) -> MintRequest:
    base: dict[str, Any] = {
        "credential": "calm",
        "token_url": TOKEN_URL,
        "client_id": "ACclient",
        "client_secret": SecretStr(SECRET),
    }
    base.update(kw)
    return MintRequest(**base)


def ok_body(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300}
    body.update(kw)
    return {k: v for k, v in body.items() if v is not None}


def jwt(payload: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    def seg(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{seg(header or {'alg': 'RS256', 'typ': 'JWT'})}.{seg(payload)}.c2lnbmF0dXJl"


def form_of(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode(), keep_blank_values=True)


async def run(handler: Handler, req: MintRequest | None = None, clock: Callable[[], float] | None = None) -> Token:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        return await mint(client, req or make_req(), clock=clock or FakeClock())


async def run_error(
    handler: Handler, req: MintRequest | None = None, clock: Callable[[], float] | None = None
) -> MintError:
    with pytest.raises(MintError) as info:
        await run(handler, req, clock)
    return info.value


def respond(status: int = 200, body: Any = None, headers: dict[str, str] | None = None, content: bytes | None = None):
    def handler(request: httpx.Request) -> httpx.Response:
        if content is not None:
            return httpx.Response(status, content=content, headers=headers)
        if body is None:
            return httpx.Response(status, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handler


# --------------------------------------------------------------------------- request shape


async def test_client_secret_post_sends_credentials_in_form() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=ok_body())

    await run(handler)
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == TOKEN_URL
    assert form_of(request) == {
        "grant_type": ["client_credentials"],
        "client_id": ["ACclient"],
        "client_secret": [SECRET],
    }
    assert "authorization" not in request.headers
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"


async def test_client_secret_basic_exact_header_and_no_secret_in_form() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=ok_body())

    await run(
        handler,
        make_req(client_id="id:with+plus", client_secret=SecretStr("se cret%:+/"), auth_method="client_secret_basic"),
    )
    (request,) = seen
    # form-urlencode each part (RFC 6749 2.3.1), then base64 "id:secret"
    expected = "Basic " + base64.b64encode(b"id%3Awith%2Bplus:se+cret%25%3A%2B%2F").decode()
    assert request.headers["authorization"] == expected
    form = form_of(request)
    assert form == {"grant_type": ["client_credentials"]}
    assert "se cret" not in request.content.decode()


@given(st.text(), st.text())
def test_basic_authorization_round_trip(client_id: str, secret: str) -> None:
    header = _basic_authorization(client_id, secret)
    scheme, _, encoded = header.partition(" ")
    assert scheme == "Basic"
    user, sep, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    assert sep == ":"
    assert unquote_plus(user) == client_id
    assert unquote_plus(password) == secret


async def test_scope_sent_only_when_configured() -> None:
    forms: list[dict[str, list[str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        forms.append(form_of(request))
        return httpx.Response(200, json=ok_body())

    await run(handler, make_req())
    await run(handler, make_req(scopes=()))
    token = await run(handler, make_req(scopes=("cards:read", "cards:write")))
    assert "scope" not in forms[0]
    assert "scope" not in forms[1]
    assert forms[2]["scope"] == ["cards:read cards:write"]
    # no scope in the response: the requested scopes are what was granted (RFC 6749 5.1)
    assert token.scope == "cards:read cards:write"


async def test_scope_from_response_wins_and_none_when_unknown() -> None:
    granted = await run(respond(body=ok_body(scope="cards:read")), make_req(scopes=("cards:read", "cards:write")))
    assert granted.scope == "cards:read"
    unknown = await run(respond(body=ok_body()))
    assert unknown.scope is None


async def test_extra_params_are_sent() -> None:
    forms: list[dict[str, list[str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        forms.append(form_of(request))
        return httpx.Response(200, json=ok_body())

    await run(handler, make_req(extra_params={"audience": "https://api.example", "resource": "urn:x"}))
    assert forms[0]["audience"] == ["https://api.example"]
    assert forms[0]["resource"] == ["urn:x"]
    assert forms[0]["grant_type"] == ["client_credentials"]


@pytest.mark.parametrize("key", ["grant_type", "client_id", "client_secret", "scope"])
async def test_extra_params_cannot_override_owned_fields(key: str) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json=ok_body())

    with pytest.raises(ValueError, match=key) as info:
        await run(handler, make_req(extra_params={key: "password"}))
    assert calls == []
    assert SECRET not in str(info.value)


async def test_nonpositive_lifetime_fallback_refused() -> None:
    with pytest.raises(ValueError, match="lifetime_fallback"):
        await run(respond(body=ok_body()), make_req(lifetime_fallback=0.0))


# --------------------------------------------------------------------------- expiry and token


async def test_issued_at_is_send_time_even_when_the_clock_moves_during_the_request() -> None:
    clock = FakeClock(T0)

    def handler(request: httpx.Request) -> httpx.Response:
        clock.now += 7.5  # the round trip takes 7.5 s
        return httpx.Response(200, json=ok_body(expires_in=300))

    token = await run(handler, clock=clock)
    assert token.issued_at == T0
    assert token.expires_at == T0 + 300
    assert token.lifetime == 300
    assert token.lifetime_source == "expires_in"
    assert clock.reads[0] == T0


async def test_token_fields() -> None:
    token = await run(respond(body=ok_body()))
    assert token.access_token.get_secret_value() == TOKEN
    assert token.token_type == "Bearer"
    assert token.fingerprint == fingerprint(TOKEN)
    assert token.server_skew is None  # not a JWT
    assert TOKEN not in repr(token)
    assert TOKEN not in str(token)


@pytest.mark.parametrize(("raw", "lifetime"), [("300", 300.0), (" 1200 ", 1200.0), (299.5, 299.5), ("59.5", 59.5)])
async def test_expires_in_as_number_or_numeric_string(raw: Any, lifetime: float) -> None:
    token = await run(respond(body=ok_body(expires_in=raw)))
    assert token.lifetime == lifetime
    assert token.expires_at == T0 + lifetime


async def test_missing_expires_in_uses_jwt_exp_minus_iat_and_reports_skew() -> None:
    # the IdP's clock runs 42 s ahead of ours; the lifetime must not be affected
    at = jwt({"iat": T0 + 42, "exp": T0 + 42 + 1200, "sub": "svc"})
    token = await run(respond(body=ok_body(access_token=at, expires_in=None)))
    assert token.lifetime_source == "jwt"
    assert token.issued_at == T0
    assert token.expires_at == T0 + 1200
    assert token.server_skew == 42


async def test_skew_reported_even_when_expires_in_is_present() -> None:
    at = jwt({"iat": T0 - 3, "exp": T0 + 297})
    token = await run(respond(body=ok_body(access_token=at, expires_in=300)))
    assert token.lifetime_source == "expires_in"
    assert token.server_skew == -3
    assert token.expires_at == T0 + 300


async def test_missing_expires_in_without_jwt_uses_fallback() -> None:
    token = await run(respond(body=ok_body(expires_in=None)), make_req(lifetime_fallback=120.0))
    assert token.lifetime_source == "fallback"
    assert token.expires_at == T0 + 120


@pytest.mark.parametrize(
    "access_token",
    [
        "a.b.c",  # three parts but not base64 JSON
        jwt({"iat": T0}),  # no exp
        jwt({"exp": "soon", "iat": T0}),  # non-numeric exp
        jwt({"exp": T0 + 10, "iat": T0}).rsplit(".", 1)[0],  # two parts
    ],
)
async def test_not_quite_a_jwt_falls_back(access_token: str) -> None:
    token = await run(respond(body=ok_body(access_token=access_token, expires_in=None)))
    assert token.lifetime_source == "fallback"
    assert token.lifetime == 300.0


async def test_refresh_token_is_ignored() -> None:
    body = ok_body(refresh_token="rt-should-not-be-used", refresh_expires_in=1800)
    token = await run(respond(body=body))
    assert token.expires_at == T0 + 300
    assert "rt-should-not-be-used" not in repr(token)


@pytest.mark.parametrize("token_type", ["bearer", "BEARER", "Bearer", "bEaReR"])
async def test_token_type_case_insensitive_and_normalised(token_type: str) -> None:
    token = await run(respond(body=ok_body(token_type=token_type)))
    assert token.token_type == "Bearer"


@pytest.mark.parametrize("token_type", ["mac", "DPoP", "N_A"])
async def test_non_bearer_token_type_is_fatal(token_type: str) -> None:
    exc = await run_error(respond(body=ok_body(token_type=token_type)))
    assert isinstance(exc, FatalMintError)
    assert exc.kind == "fatal"
    assert token_type in str(exc)
    assert "Bearer" in str(exc)


async def test_missing_token_type_is_an_invalid_response() -> None:
    exc = await run_error(respond(body=ok_body(token_type=None)))
    assert isinstance(exc, TransientMintError)
    assert "token_type" in str(exc)


# --------------------------------------------------------------------------- fatal responses


FATAL_CODES = [
    "invalid_client",
    "unauthorized_client",
    "invalid_scope",
    "unsupported_grant_type",
    "invalid_request",
    "invalid_grant",
]


@pytest.mark.parametrize("status", [400, 401, 403])
@pytest.mark.parametrize("code", FATAL_CODES)
async def test_fatal_oauth_errors(status: int, code: str) -> None:
    body = {"error": code, "error_description": "Invalid client or Invalid client credentials"}
    exc = await run_error(respond(status, body))
    assert isinstance(exc, FatalMintError)
    assert exc.kind == "fatal"
    assert (exc.status, exc.error) == (status, code)
    assert exc.description == "Invalid client or Invalid client credentials"
    assert exc.credential == "calm"
    assert exc.retry_after is None
    message = str(exc)
    assert "'calm'" in message
    assert f"{status} {code}" in message
    assert "fatal_retry" in message
    assert "\n" not in message


async def test_keycloak_wrong_secret_message_says_what_to_do() -> None:
    body = {"error": "unauthorized_client", "error_description": "Invalid client or Invalid client credentials"}
    exc = await run_error(respond(401, body))
    assert str(exc).startswith("credential 'calm': the IdP rejected the client credentials (401 unauthorized_client")
    assert "check client_id, client_secret" in str(exc)


@pytest.mark.parametrize("content", [b"", b"Unauthorized", b"<html><body>401</body></html>"])
async def test_401_without_oauth_body_is_fatal(content: bytes) -> None:
    exc = await run_error(respond(401, content=content))
    assert isinstance(exc, FatalMintError)
    assert exc.status == 401
    assert exc.error is None
    assert "client_secret" in str(exc)


@pytest.mark.parametrize("status", [404, 405])
async def test_wrong_token_url_is_fatal_and_names_the_url(status: int) -> None:
    exc = await run_error(respond(status, content=b"<html>Not Found</html>", headers={"content-type": "text/html"}))
    assert isinstance(exc, FatalMintError)
    assert TOKEN_URL in str(exc)
    assert "token_url" in str(exc)


async def test_url_userinfo_not_shown() -> None:
    exc = await run_error(respond(404), make_req(token_url="https://user:pw-in-url@auth.example.test/token"))
    assert "pw-in-url" not in str(exc)
    assert "auth.example.test/token" in str(exc)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirect_is_not_followed_and_is_fatal(status: int) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(status, headers={"location": "https://elsewhere.test/token"})

    exc = await run_error(handler)
    assert calls == [TOKEN_URL]
    assert isinstance(exc, FatalMintError)
    assert "elsewhere.test" in str(exc)


@pytest.mark.parametrize("content", [b"", b"garbage", b'{"error": "something_new"}'])
async def test_other_4xx_is_fatal(content: bytes) -> None:
    exc = await run_error(respond(400, content=content))
    assert isinstance(exc, FatalMintError)
    assert exc.status == 400


@pytest.mark.parametrize(
    "url", ["ftp://auth.example.test/token", "auth.example.test/token", "https://exa mple.test:x/"]
)
async def test_unusable_url_is_fatal(url: str) -> None:
    # a real (unmocked) client: these are refused before any connection is attempted
    async with httpx.AsyncClient() as client:
        with pytest.raises(FatalMintError) as info:
            await mint(client, make_req(token_url=url), clock=FakeClock())
    assert "token_url" in str(info.value)
    assert info.value.__context__ is None


# --------------------------------------------------------------------------- transient responses


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_transient_statuses(status: int) -> None:
    exc = await run_error(respond(status, content=b""))
    assert isinstance(exc, TransientMintError)
    assert exc.kind == "transient"
    assert exc.status == status
    assert exc.retry_after is None
    assert "retry" in str(exc)


async def test_503_with_oauth_error_is_transient() -> None:
    exc = await run_error(respond(503, {"error": "temporarily_unavailable", "error_description": "busy"}))
    assert isinstance(exc, TransientMintError)
    assert exc.error == "temporarily_unavailable"
    assert "503 temporarily_unavailable: busy" in str(exc)


async def test_server_error_code_on_400_is_transient() -> None:
    exc = await run_error(respond(400, {"error": "server_error"}))
    assert isinstance(exc, TransientMintError)


async def test_html_error_page_is_transient_and_says_so() -> None:
    page = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"
    exc = await run_error(respond(502, content=page, headers={"content-type": "text/html"}))
    assert isinstance(exc, TransientMintError)
    assert str(exc) == (
        f"credential 'calm': token endpoint {TOKEN_URL} returned an HTML page with status 502 "
        "(not an OAuth response); will retry with backoff"
    )


@pytest.mark.parametrize(("value", "expected"), [("30", 30.0), ("0", 0.0), ("-5", 0.0), ("2.5", 2.5)])
@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_seconds(status: int, value: str, expected: float) -> None:
    exc = await run_error(respond(status, content=b"", headers={"retry-after": value}))
    assert isinstance(exc, TransientMintError)
    assert exc.retry_after == expected


@pytest.mark.parametrize(("offset", "expected"), [(120, 120.0), (-60, 0.0)])
async def test_retry_after_http_date(offset: int, expected: float) -> None:
    when = format_datetime(datetime.fromtimestamp(T0 + offset, UTC), usegmt=True)
    exc = await run_error(respond(503, content=b"", headers={"retry-after": when}), clock=FakeClock(T0))
    assert exc.retry_after == expected


async def test_retry_after_date_measured_from_receipt() -> None:
    clock = FakeClock(T0)
    when = format_datetime(datetime.fromtimestamp(T0 + 120, UTC), usegmt=True)

    def handler(request: httpx.Request) -> httpx.Response:
        clock.now += 20
        return httpx.Response(429, headers={"retry-after": when})

    exc = await run_error(handler, clock=clock)
    assert exc.retry_after == 100.0


@pytest.mark.parametrize("value", ["soon", "", "nan", "inf", "Tue, 99 Foo 2026 99:99:99 GMT"])
async def test_retry_after_nonsense_ignored(value: str) -> None:
    exc = await run_error(respond(503, content=b"", headers={"retry-after": value}))
    assert isinstance(exc, TransientMintError)
    assert exc.retry_after is None


@pytest.mark.parametrize(
    "error",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.WriteTimeout("write timed out"),
        httpx.PoolTimeout("pool timed out"),
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ReadError("connection reset"),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
    ],
)
async def test_transport_failures_are_transient(error: httpx.TransportError) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    exc = await run_error(handler)
    assert isinstance(exc, TransientMintError)
    assert exc.status is None
    assert type(error).__name__ in str(exc)
    assert TOKEN_URL in str(exc)
    # nothing chained: an httpx exception carries the request (form and Authorization header)
    assert exc.__cause__ is None
    assert exc.__context__ is None


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"<html><body>Login</body></html>", "HTML"),
        (b"not json at all", "not a JSON object"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b"", "empty body"),
        (b"[" * 50_000, "not a JSON object"),
        (json.dumps({"token_type": "Bearer", "expires_in": 300}).encode(), "no access_token"),
        (json.dumps({"access_token": 12345, "token_type": "Bearer"}).encode(), "access_token"),
        (json.dumps({"access_token": "", "token_type": "Bearer"}).encode(), "access_token"),
        (json.dumps({"access_token": "ab\ncd", "token_type": "Bearer"}).encode(), "access_token"),
        (json.dumps({"access_token": TOKEN, "token_type": 1}).encode(), "token_type"),
        (json.dumps({"access_token": TOKEN, "token_type": "Bearer", "expires_in": "soon"}).encode(), "expires_in"),
        (json.dumps({"access_token": TOKEN, "token_type": "Bearer", "expires_in": True}).encode(), "expires_in"),
        (json.dumps({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 1e300}).encode(), "plausible"),
        (json.dumps({"access_token": TOKEN, "token_type": "Bearer", "scope": ["a"]}).encode(), "scope"),
    ],
)
async def test_200_that_is_not_a_token_response_is_transient(content: bytes, why: str) -> None:
    exc = await run_error(respond(200, content=content))
    assert isinstance(exc, TransientMintError)
    assert exc.status == 200
    assert why in str(exc)


@pytest.mark.parametrize("expires_in", [0, -1, "0", "-300", 0.0])
async def test_nonpositive_expires_in_is_transient(expires_in: Any) -> None:
    exc = await run_error(respond(body=ok_body(expires_in=expires_in)))
    assert isinstance(exc, TransientMintError)
    assert "expires_in" in str(exc)


async def test_jwt_with_exp_not_after_iat_is_transient() -> None:
    at = jwt({"iat": T0, "exp": T0})
    exc = await run_error(respond(body=ok_body(access_token=at, expires_in=None)))
    assert isinstance(exc, TransientMintError)


async def test_body_larger_than_cap_is_transient() -> None:
    padding = "x" * MAX_BODY
    exc = await run_error(respond(body=ok_body(padding=padding)))
    assert isinstance(exc, TransientMintError)
    assert "64 KiB" in str(exc)


async def test_body_at_cap_is_accepted() -> None:
    body = json.dumps(ok_body(padding="")).encode()
    body = body[:-1] + b', "p": "' + b"x" * (MAX_BODY - len(body) - 9) + b'"}'
    assert len(body) == MAX_BODY
    token = await run(respond(200, content=body))
    assert token.access_token.get_secret_value() == TOKEN


async def test_endless_stream_is_cut_at_cap() -> None:
    produced = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal produced
        while True:
            produced += 4096
            yield b" " * 4096

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    exc = await run_error(handler)
    assert isinstance(exc, TransientMintError)
    assert produced <= MAX_BODY + 4096


# --------------------------------------------------------------------------- secrets never leak


def _leaky_handlers() -> dict[str, Handler]:
    echo = {"error": "invalid_client", "error_description": f"bad secret {SECRET} ({TOKEN})", "access_token": TOKEN}

    def raising(error: Exception) -> Handler:
        def handler(request: httpx.Request) -> httpx.Response:
            raise error

        return handler

    def echo_request(status: int) -> Handler:
        def handler(request: httpx.Request) -> httpx.Response:
            text = f"{request.content.decode()} {request.headers.get('authorization', '')}"
            return httpx.Response(status, json={"error": "invalid_request", "error_description": text})

        return handler

    return {
        "401 echoing secret": respond(401, echo),
        "400 echoing request": echo_request(400),
        "503 echoing request": echo_request(503),
        "200 echoing request": echo_request(200),
        "401 empty": respond(401, content=b""),
        "404": respond(404, content=f"no {TOKEN} here".encode()),
        "redirect": respond(302, headers={"location": f"https://x.test/?s={SECRET}"}),
        "429 retry-after": respond(429, content=TOKEN.encode(), headers={"retry-after": "3"}),
        "502 html": respond(502, content=f"<html>{TOKEN} {SECRET}</html>".encode()),
        "200 html": respond(200, content=f"<html>{TOKEN}</html>".encode()),
        "200 no access_token": respond(200, {"token": TOKEN}),
        "200 mac": respond(200, ok_body(token_type="mac")),
        "200 token_type echoes token": respond(200, ok_body(token_type=f"x{TOKEN}")),
        "200 expires_in 0": respond(200, ok_body(expires_in=0)),
        "200 missing token_type": respond(200, ok_body(token_type=None)),
        "200 too big": respond(200, ok_body(padding="y" * MAX_BODY)),
        "read timeout": raising(httpx.ReadTimeout(f"timeout {SECRET}")),
        "connect error": raising(httpx.ConnectError(f"refused {SECRET}")),
    }


@pytest.mark.parametrize("auth_method", ["client_secret_post", "client_secret_basic"])
@pytest.mark.parametrize("case", sorted(_leaky_handlers()))
async def test_errors_never_contain_secret_or_token(case: str, auth_method: str) -> None:
    req = make_req(auth_method=auth_method)
    basic = _basic_authorization(req.client_id, SECRET).removeprefix("Basic ")
    exc = await run_error(_leaky_handlers()[case], req)
    texts = [str(exc), repr(exc), repr(exc.args), repr(vars(exc)), repr(pickle.loads(pickle.dumps(exc)).args)]
    for text in texts:
        for needle in (SECRET, TOKEN, basic):
            assert needle not in text, (case, text)
    assert exc.__cause__ is None
    assert exc.__context__ is None


async def test_token_and_request_reprs_never_show_secrets() -> None:
    token = await run(respond(body=ok_body()))
    req = make_req()
    for text in (repr(token), str(token), repr(req), str(req)):
        assert TOKEN not in text
        assert SECRET not in text


async def test_server_description_is_sanitised_and_truncated() -> None:
    description = "line one\nline two\x1b[31m red\u202e" + "z" * 500
    exc = await run_error(respond(401, {"error": "invalid_client", "error_description": description}))
    assert exc.description is not None
    assert len(exc.description) <= 200
    assert "\n" not in exc.description
    assert "\x1b" not in exc.description
    assert "\u202e" not in exc.description
    assert "\n" not in str(exc)


# --------------------------------------------------------------------------- error objects


def test_error_attributes_and_pickling() -> None:
    exc = TransientMintError(
        "credential 'calm': slow down",
        credential="calm",
        status=429,
        error="slow_down",
        description="d",
        retry_after=3.0,
    )
    assert exc.args == ("credential 'calm': slow down",)
    assert exc.message == str(exc)
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is TransientMintError
    assert vars(clone) == vars(exc)
    assert FatalMintError.kind == "fatal"
    assert TransientMintError.kind == "transient"


def test_error_message_is_one_line() -> None:
    exc = FatalMintError("a\nb\r\nc", credential="x")
    assert str(exc) == "a b c"


# --------------------------------------------------------------------------- the shared client


async def test_build_http_client_defaults() -> None:
    client = build_http_client(timeout=7.0, connect_timeout=2.0)
    try:
        assert client.headers["user-agent"] == f"syncd/{__version__}"
        assert client.follow_redirects is False
        assert client.timeout.read == 7.0
        assert client.timeout.connect == 2.0
    finally:
        await client.aclose()


async def test_build_http_client_with_ca_bundle() -> None:
    import certifi

    client = build_http_client(ca_bundle=certifi.where())
    await client.aclose()
    with pytest.raises(FileNotFoundError):
        build_http_client(ca_bundle="/nonexistent/ca.pem")


def test_build_http_client_key_without_cert_refused() -> None:
    with pytest.raises(ValueError, match="client_cert"):
        build_http_client(client_key="/etc/key.pem")


@pytest.mark.parametrize(
    ("method", "names", "not_named"),
    [
        ("client_secret_post", ("client_secret",), ()),
        ("client_secret_basic", ("client_secret",), ()),
        ("private_key_jwt", ("private_key", "key_id"), ("client_secret",)),
        ("client_assertion", ("client_assertion",), ("client_secret",)),
        ("tls_client_auth", ("client_cert",), ("client_secret",)),
        ("client_secret_jwt", ("client_secret", "signing_alg"), ()),
    ],
)
async def test_rejected_client_hint_names_what_the_auth_method_uses(
    method: str, names: tuple[str, ...], not_named: tuple[str, ...]
) -> None:
    """A key-based client told to check its client_secret would chase a setting it does not have."""
    assertion = SecretStr("header.payload.signature") if method.endswith(("_jwt", "assertion")) else None
    req = make_req(auth_method=method, client_assertion=assertion)
    for status, code in ((400, "invalid_client"), (401, "unauthorized_client")):
        exc = await run_error(respond(status, {"error": code}), req)
        message = str(exc)
        for name in names:
            assert name in message, (method, code, message)
        for name in not_named:
            assert name not in message, (method, code, message)
    bare = await run_error(respond(401, content=b"Unauthorized"), req)
    for name in names:
        assert name in str(bare), (method, str(bare))


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://idp.example/token", "https://idp.example:443"),
        ("http://idp.example:8080/realms/x/token", "http://idp.example:8080"),
        ("https://user:pass-123456@idp.example/token", "https://idp.example:443"),
    ],
)
def test_endpoint_origin(url, origin):
    assert endpoint_origin(url) == origin


def test_an_unparsable_endpoint_is_its_own_origin_without_its_credentials():
    """It labels syncd_mints_waiting and names the endpoint in slot errors: no userinfo, no secret query value."""
    origin = endpoint_origin("https://user:pass-123456@idp.example:abc/token?api_key=key-654321")
    assert "pass-123456" not in origin and "key-654321" not in origin
    assert "idp.example:abc" in origin
