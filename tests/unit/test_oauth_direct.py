"""syncd.oauth.direct: a ``build_http_client`` client's mint skips httpx's client, with the same outcome.

Every case is minted twice against the same server: once with a client from ``build_http_client``
(the direct path) and once with the same client whose transport is wrapped, so ``mint`` does not
recognise it and keeps httpx's path. The Token, or the error's class, message and fields, must be
the same. The server is a real local aiohttp server, not the oidc-provider peer: most of these
cases are faults a real IdP cannot be made to produce on demand (an oversized body declared or
chunked, a body dripped past the deadline, a connection closed mid-body, a 5xx).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr

from bench.mint_cost import HttpxPathOnly
from syncd.oauth import MAX_BODY, MintError, MintRequest, Token, build_http_client, direct, mint
from syncd.oauth.transport import AiohttpTransport
from tests.peers.servers import free_port

SECRET = "direct-secret-0123456789"
TOKEN = {"access_token": "tok-" + "d" * 40, "token_type": "Bearer", "expires_in": 300, "scope": "a b"}


def _req(url: str, **kw: Any) -> MintRequest:
    return MintRequest(credential="calm", token_url=url, client_id="calm", client_secret=SecretStr(SECRET), **kw)


def _httpx_only_client() -> httpx.AsyncClient:
    client = build_http_client()
    client._transport = HttpxPathOnly(client._transport)
    return client


async def _drip(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    for _ in range(100):  # one byte a tenth of a second: never a read timeout, always past the deadline
        await resp.write(b" ")
        await asyncio.sleep(0.1)
    return resp


async def _oversized(request: web.Request) -> web.StreamResponse:
    declared = request.path == "/declared"
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    if declared:
        resp.content_length = 2 * MAX_BODY
    await resp.prepare(request)
    for _ in range(2 * MAX_BODY // 4096):
        await resp.write(b"x" * 4096)
    return resp


async def _cut(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.content_length = 500
    await resp.prepare(request)
    await resp.write(b'{"access_token": "tok-')
    assert request.transport is not None
    request.transport.close()
    return resp


ROUTES: dict[str, Any] = {
    "/good": lambda r: web.json_response(TOKEN),
    # A non-ASCII header value (httpx decodes header bytes as ASCII, UTF-8, else Latin-1).
    "/accented": lambda r: web.json_response(TOKEN, headers={"X-Served-By": "idp-é"}),
    "/invalid_client": lambda r: web.json_response({"error": "invalid_client", "error_description": "bad"}, status=400),
    "/unauthorized": lambda r: web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="idp"'}),
    "/limited": lambda r: web.json_response({"error": "slow_down"}, status=429, headers={"Retry-After": "7"}),
    "/unavailable": lambda r: web.Response(status=503, text="<html>down</html>", content_type="text/html"),
    "/redirect": lambda r: web.Response(status=302, headers={"Location": "https://elsewhere.example/token"}),
    "/declared": _oversized,
    "/chunked": _oversized,
    "/drip": _drip,
    "/cut": _cut,
}


@pytest.fixture
async def idp() -> AsyncIterator[tuple[str, list[tuple[str, list[tuple[str, str]], bytes]]]]:
    seen: list[tuple[str, list[tuple[str, str]], bytes]] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
        seen.append((request.path, headers, await request.read()))
        result = ROUTES[request.path](request)
        return await result if asyncio.iscoroutine(result) else result

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def _outcome(client: httpx.AsyncClient, req: MintRequest) -> tuple[Any, ...]:
    try:
        token = await mint(client, req, clock=lambda: 1_000.0)
    except MintError as exc:
        assert exc.__cause__ is None and exc.__context__ is None
        assert SECRET not in str(exc)
        return (type(exc).__name__, str(exc), exc.status, exc.error, exc.description, exc.retry_after)
    assert isinstance(token, Token)
    return ("Token", token.access_token.get_secret_value(), token.scope, token.lifetime, token.lifetime_source)


CASES = [
    ("/good", "Token"),
    ("/accented", "Token"),
    ("/invalid_client", "FatalMintError"),
    ("/unauthorized", "FatalMintError"),
    ("/limited", "TransientMintError"),
    ("/unavailable", "TransientMintError"),
    ("/redirect", "FatalMintError"),
    ("/declared", "TransientMintError"),
    ("/chunked", "TransientMintError"),
    ("/drip", "TransientMintError"),
    ("/cut", "TransientMintError"),
    ("refused", "TransientMintError"),
]


async def test_the_direct_path_and_httpx_path_give_the_same_outcome(idp) -> None:
    base, _ = idp
    refused = f"http://127.0.0.1:{free_port()}/token"
    fast, via_httpx = build_http_client(), _httpx_only_client()
    try:
        # One pair of clients for every case: a connection left half-read would break the next case.
        for path, kind in CASES:
            req = _req(refused if path == "refused" else base + path, mint_timeout=0.6, scopes=("a", "b"))
            assert direct.direct_transport(fast, httpx.URL(req.token_url)) is not None
            assert direct.direct_transport(via_httpx, httpx.URL(req.token_url)) is None
            got, expected = await _outcome(fast, req), await _outcome(via_httpx, req)
            assert got == expected, path
            assert got[0] == kind, (path, got)
    finally:
        await fast.aclose()
        await via_httpx.aclose()


async def test_the_direct_path_sends_the_request_httpx_sends(idp) -> None:
    base, seen = idp
    fast, via_httpx = build_http_client(), _httpx_only_client()
    try:
        for auth_method in ("client_secret_post", "client_secret_basic"):
            req = _req(base + "/good", scopes=("a", "b"), auth_method=auth_method, extra_params={"audience": "x y&z"})
            await mint(fast, req)
            await mint(via_httpx, req)
            (_, direct_headers, direct_body), (_, httpx_headers, httpx_body) = seen[-2:]
            assert direct_headers == httpx_headers  # names, values and order
            assert direct_body == httpx_body
    finally:
        await fast.aclose()
        await via_httpx.aclose()


async def test_a_build_http_client_client_takes_the_direct_path(idp, monkeypatch) -> None:
    base, _ = idp
    sent = direct.send
    calls: list[str] = []

    async def counting(*args: Any, **kw: Any) -> Any:
        calls.append("direct")
        return await sent(*args, **kw)

    monkeypatch.setattr(direct, "send", counting)
    client = build_http_client()
    try:
        for _ in range(3):
            await mint(client, _req(base + "/good"))
    finally:
        await client.aclose()
    assert calls == ["direct"] * 3


async def test_a_cookie_the_idp_sets_is_kept_as_httpx_keeps_it(idp) -> None:
    base, seen = idp
    ROUTES["/cookie"] = lambda r: web.json_response(TOKEN, headers={"Set-Cookie": "lb=one; Path=/"})
    client = build_http_client()
    try:
        await mint(client, _req(base + "/cookie"))
        assert client.cookies.get("lb") == "one"
        # The client now holds a cookie: the next mint takes httpx's path, which sends it.
        assert direct.direct_transport(client, httpx.URL(base + "/good")) is None
        await mint(client, _req(base + "/good"))
    finally:
        del ROUTES["/cookie"]
        await client.aclose()
    assert ("cookie", "lb=one") in seen[-1][1]


def test_proxied_and_foreign_clients_keep_httpx_path(monkeypatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "idp.internal")
    proxied = build_http_client()
    assert direct.direct_transport(proxied, httpx.URL("http://idp.example/token")) is None
    assert isinstance(direct.direct_transport(proxied, httpx.URL("http://idp.internal/token")), AiohttpTransport)
    mocked = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    assert direct.direct_transport(mocked, httpx.URL("http://idp.example/token")) is None
    plain = build_http_client()
    assert direct.direct_transport(plain, httpx.URL("http://user:pw@idp.example/token")) is None  # httpx's Basic auth
    assert direct.direct_transport(plain, "not a url") is None
    plain.auth = httpx.BasicAuth("a", "b")
    assert direct.direct_transport(plain, httpx.URL("http://idp.example/token")) is None


def test_the_form_is_encoded_as_httpx_encodes_it() -> None:
    form = {"grant_type": "client_credentials", "client_id": "a b", "scope": "x+y/z ü", "audience": "&="}
    request = httpx.Request("POST", "http://idp.example/token", data=form)
    assert json.dumps(request.read().decode()) == json.dumps(direct.form_body(form).decode())


async def test_a_proxy_from_the_environment_carries_the_request(idp, monkeypatch) -> None:
    """HTTP_PROXY is honoured (httpx's proxy transport, not the direct path); NO_PROXY hosts go direct."""
    base, seen = idp
    monkeypatch.setenv("HTTP_PROXY", base)  # the local server plays the proxy and answers itself
    monkeypatch.setenv("NO_PROXY", "")
    client = build_http_client()
    try:
        token = await mint(client, _req("http://idp.invalid/good"))
    finally:
        await client.aclose()
    assert token.access_token.get_secret_value() == TOKEN["access_token"]
    assert ("host", "idp.invalid") in [(k.lower(), v) for k, v in seen[-1][1]]


async def test_the_request_is_logged_as_httpx_logs_it(idp, caplog) -> None:
    base, _ = idp
    fast, via_httpx = build_http_client(), _httpx_only_client()
    try:
        with caplog.at_level(logging.INFO, logger="httpx"):
            for client in (fast, via_httpx):
                with pytest.raises(MintError):
                    await mint(client, _req(base + "/limited"))
    finally:
        await fast.aclose()
        await via_httpx.aclose()
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert len(lines) == 2 and lines[0] == lines[1], lines
    assert lines[0] == f'HTTP Request: POST {base}/limited "HTTP/1.1 429 Too Many Requests"'
