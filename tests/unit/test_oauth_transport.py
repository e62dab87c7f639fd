"""syncd.oauth.transport through ``build_http_client`` and ``mint``, against a real local aiohttp server.

The transport must keep what httpx's own transport gave ``mint``: the form and headers reach the server,
redirects are not followed, the body cap stops reading, compressed bodies are decoded by httpx, and
transport failures become the httpx exceptions ``oauth`` classifies.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from syncd.oauth import MAX_BODY, FatalMintError, MintRequest, TransientMintError, build_http_client, mint
from tests.peers.servers import free_port

SECRET = "transport-secret-0123456789"


def _req(url: str, **kw: Any) -> MintRequest:
    return MintRequest(credential="calm", token_url=url, client_id="calm", client_secret=SecretStr(SECRET), **kw)


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    async def token(request: web.Request) -> web.StreamResponse:
        form = dict(await request.post())
        seen.append({"form": form, "headers": dict(request.headers)})
        body = json.dumps({"access_token": "tok-" + "x" * 30, "token_type": "Bearer", "expires_in": 300}).encode()
        if request.path == "/gzip":
            return web.Response(
                body=gzip.compress(body), headers={"Content-Encoding": "gzip"}, content_type="application/json"
            )
        return web.Response(body=body, content_type="application/json")

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/token")

    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        for _ in range(2 * MAX_BODY // 4096 + 2):  # no Content-Length: the cap must stop the reading
            await resp.write(b"x" * 4096)
        return resp

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_post("/gzip", token)
    app.router.add_post("/redirect", redirect)
    app.router.add_post("/huge", huge)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_mint_sends_the_form_and_headers_and_reads_the_token(server) -> None:
    url, seen = server
    client = build_http_client()
    try:
        for _ in range(3):  # the pooled connection is reused
            token = await mint(client, _req(f"{url}/token", scopes=("a", "b")))
            assert token.access_token.get_secret_value().startswith("tok-")
    finally:
        await client.aclose()
    form, headers = seen[0]["form"], seen[0]["headers"]
    assert form == {"grant_type": "client_credentials", "client_id": "calm", "client_secret": SECRET, "scope": "a b"}
    assert headers["User-Agent"].startswith("syncd/") and headers["Accept-Encoding"] == "identity"


async def test_a_compressed_answer_is_decoded_by_httpx(server) -> None:
    url, _ = server
    client = build_http_client()
    try:
        token = await mint(client, _req(f"{url}/gzip"))
    finally:
        await client.aclose()
    assert token.access_token.get_secret_value().startswith("tok-")


async def test_a_redirect_is_not_followed(server) -> None:
    url, seen = server
    client = build_http_client()
    try:
        with pytest.raises(FatalMintError, match=r"redirected \(302\)"):
            await mint(client, _req(f"{url}/redirect"))
    finally:
        await client.aclose()
    assert not seen, "the secret was replayed to the redirect target"


async def test_the_body_cap_stops_reading(server) -> None:
    url, _ = server
    client = build_http_client()
    try:
        with pytest.raises(TransientMintError, match="larger than"):
            await mint(client, _req(f"{url}/huge"))
        token = await mint(client, _req(f"{url}/token"))  # the cut connection was not reused half-read
    finally:
        await client.aclose()
    assert token.access_token.get_secret_value().startswith("tok-")


async def test_transport_failures_are_classified() -> None:
    client = build_http_client(connect_timeout=2.0)
    try:
        with pytest.raises(TransientMintError, match="could not reach") as info:
            await mint(client, _req(f"http://127.0.0.1:{free_port()}/token"))
        assert SECRET not in str(info.value) and info.value.__cause__ is None
        with pytest.raises(FatalMintError, match="not a usable http"):
            await mint(client, _req("ftp://127.0.0.1/token"))
    finally:
        await client.aclose()
