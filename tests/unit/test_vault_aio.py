"""The store's KV requests from the event loop (syncd.stores.vault.aio).

* They use the TLS settings a ``requests`` call of the store would use (the plain-HTTP dev
  server of the integration tests cannot exercise TLS).
* A rotation's write is taken from the loop only when Vault answers it plainly; the answers a
  real OpenBao cannot be made to give (not Vault's, too large, dripping in) come from an
  in-process aiohttp server and must each go to the hvac path.

The reads are compared with the store's own ``read`` against a real OpenBao in
tests/integration/test_startup_batch_reads.py, and the writes (conflicts, denials, a refused
metadata write) in tests/integration/test_vault_kv.py.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest

from syncd.config import VaultStoreConfig
from syncd.stores.vault import VaultStore
from tests.peers.pki import Pki


def store(url: str, **kw: Any) -> VaultStore:
    cfg = VaultStoreConfig.model_validate(
        {"type": "vault", "url": url, "auth": {"method": "token", "token_env": "NO_SUCH_VAR"}, **kw}
    )
    return VaultStore("vault", cfg)


def test_ca_cert_and_client_certificate_are_loaded(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    pki = Pki(tmp_path)
    cert, key = pki.issue("syncd")
    ctx = store("https://127.0.0.1:8200", ca_cert=str(pki.ca_file), client_cert=str(cert), client_key=str(key))._aio
    got = ctx._ssl_like_requests()
    assert isinstance(got, ssl.SSLContext)
    assert got.verify_mode == ssl.CERT_REQUIRED and got.check_hostname
    assert any("syncd test CA" in str(c.get("subject")) for c in got.get_ca_certs())


def test_default_bundle_skip_verify_and_plain_http(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    default = store("https://vault.example:8200")._aio._ssl_like_requests()
    assert isinstance(default, ssl.SSLContext) and default.verify_mode == ssl.CERT_REQUIRED
    skip = store("https://vault.example:8200", tls_skip_verify=True)._aio._ssl_like_requests()
    assert isinstance(skip, ssl.SSLContext) and skip.verify_mode == ssl.CERT_NONE and not skip.check_hostname
    assert store("http://127.0.0.1:8200")._aio._ssl_like_requests() is False


def test_a_proxied_address_keeps_to_hvac(monkeypatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    s = store("https://vault.example:8200")
    s._client.adapter.token = "t-0123456789"  # noqa: S105 - a test value
    s._kv._mount_checked = True
    assert not s._aio.usable()
    monkeypatch.setenv("NO_PROXY", "vault.example")
    s2 = store("https://vault.example:8200")
    s2._client.adapter.token = "t-0123456789"  # noqa: S105 - a test value
    s2._kv._mount_checked = True
    assert s2._aio.usable()


# ---------------------------------------------------------------------------------------------
# The plain write's answers a real OpenBao cannot be made to give: an in-process aiohttp server
# stands in for Vault (what a real one answers is in tests/integration/test_vault_kv.py).

GOOD_DATA = {"data": {"version": 8, "created_time": "2026-12-02T00:00:00Z"}}


def _payload() -> Any:
    import time

    from pydantic import SecretStr

    from syncd.payload import TokenPayload

    now = time.time()
    return TokenPayload("calm", SecretStr("at-" + "x" * 40), now, now + 300, now + 150)


async def _write_through(fake: Any, monkeypatch) -> tuple[Any, list[str], list[dict[str, Any]]]:
    """Serve ``fake`` (an aiohttp handler for both paths), write once; the result, whether the hvac
    path was asked, and the bodies the fake received."""
    import asyncio

    from aiohttp import web

    from syncd.stores.base import WriteResult
    from syncd.stores.vault import aio

    bodies: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        bodies.append({"path": request.path, **(await request.json())})
        return await fake(request)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    s = store(f"http://127.0.0.1:{port}", timeout="1s")
    s._client.adapter.token = "t-0123456789"  # noqa: S105 - a test value
    s._kv._mount_checked = True
    s._kv._path_state("vgs/calm").version = 7
    asked: list[str] = []

    async def slow() -> WriteResult:
        asked.append("hvac")
        return WriteResult(written=True, version="from-hvac", location="x")

    monkeypatch.setattr(aio, "MAX_ANSWER", 4096)
    try:
        result = await asyncio.wait_for(s._aio.write("vgs/calm", _payload(), "json", slow), 10)
    finally:
        await s._aio.aclose()
        await runner.cleanup()
    return result, asked, bodies


async def test_a_plain_answer_is_taken_from_the_loop(monkeypatch) -> None:
    from aiohttp import web

    async def vault(request: web.Request) -> web.Response:
        if "/data/" in request.path:
            return web.json_response(GOOD_DATA)
        return web.Response(status=204)

    result, asked, bodies = await _write_through(vault, monkeypatch)
    assert asked == [] and result.written and result.version == "8"
    assert [b["path"] for b in bodies] == ["/v1/secret/data/vgs/calm", "/v1/secret/metadata/vgs/calm"]
    assert bodies[0]["options"] == {"cas": 7}


def _answers() -> dict[str, Any]:
    import asyncio

    from aiohttp import web

    async def no_version(request: web.Request) -> web.Response:
        return web.json_response({"data": {}})  # a 200 that is not Vault's (a proxy's page)

    async def same_version(request: web.Request) -> web.Response:
        return web.json_response({"data": {"version": 7}})  # not newer than the cas sent

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>portal</html>", content_type="text/html")

    async def huge(request: web.Request) -> web.Response:
        return web.json_response({"data": {"version": 8, "pad": "x" * 10_000}})

    async def drip(request: web.Request) -> web.StreamResponse:  # each byte within the read timeout, never done
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        for _ in range(40):
            await resp.write(b" ")
            await asyncio.sleep(0.1)
        await resp.write(json_bytes(GOOD_DATA))
        return resp

    async def metadata_refused(request: web.Request) -> web.Response:
        if "/data/" in request.path:
            return web.json_response(GOOD_DATA)
        return web.json_response({"errors": ["permission denied"]}, status=403)

    return {
        "no_version": no_version,
        "same_version": same_version,
        "html": html,
        "huge": huge,
        "drip": drip,
        "metadata_refused": metadata_refused,
    }


def json_bytes(value: Any) -> bytes:
    import json

    return json.dumps(value).encode()


@pytest.mark.parametrize("answer", sorted(_answers()))
async def test_an_answer_that_is_not_plain_goes_to_the_hvac_path(answer: str, monkeypatch) -> None:
    """Not Vault's answer, a version that did not move, a body over the cap, one dripping in past the
    store's timeout, a refused metadata write: each is handed to the hvac path, whose result is the write's."""
    result, asked, _ = await _write_through(_answers()[answer], monkeypatch)
    assert asked == ["hvac"] and result.version == "from-hvac"
