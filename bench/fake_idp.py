"""A benchmark fake of a Keycloak token endpoint: fast enough never to be the bottleneck.

**This is a benchmark fake, not an OAuth server.** It accepts *any* client_id
and client_secret (client_secret_post or client_secret_basic, it does not even
look), never fails, and answers every ``POST`` to the token path with a fresh
Keycloak-shaped client-credentials response whose ``expires_in`` is ``--ttl``.
Correct OAuth behaviour is tested against the real oidc-provider
(``tests/peers/servers.OidcServer``); the harness also runs one small case
against it so the numbers are not an artefact of this fake.

Why a dedicated fake: thousands of clients at 60+ requests/s must cost the
machine as little as possible, and the cost must land in *this* process, not in
syncd's (it runs as its own process, so its CPU is never counted as syncd's).
It is a raw asyncio protocol speaking just enough HTTP/1.1 (keep-alive,
Content-Length bodies) for httpx; an aiohttp app costs several times more per
request.

Tokens look like Keycloak's: an RS256-shaped JWT of about 1 KB (header, claims
with ``iat``/``exp``/``jti``/``azp``, a random 256-byte "signature"), because
real token size drives syncd's parsing, payload and store costs. ``--opaque``
issues short opaque tokens instead.

Endpoints::

    POST /auth/realms/vgs/protocol/openid-connect/token   a token (any credentials)
    GET  /_stats                                          {"total": n, "by_path": {...}}
    POST /_stats/reset                                    zero the counters

Run: ``python -m bench.fake_idp --port 0 --ttl 30``; it prints
``READY http://127.0.0.1:<port>`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import signal
import sys
import time
import uuid
from urllib.parse import parse_qsl

TOKEN_PATH = "/auth/realms/vgs/protocol/openid-connect/token"
ISSUER = "http://127.0.0.1/auth/realms/vgs"
MAX_HEADER = 16 * 1024
MAX_BODY = 64 * 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Issuer:
    """Builds token responses; the random "signature" comes from a pool so issuing stays cheap."""

    def __init__(self, ttl: float, opaque: bool) -> None:
        self.ttl = ttl
        self.opaque = opaque
        self.header = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "bench-key"}).encode())
        self.signatures = [_b64(os.urandom(256)) for _ in range(64)]
        self.count = 0

    def token(self, client_id: str) -> str:
        if self.opaque:
            return secrets.token_urlsafe(32)
        now = int(time.time())
        claims = {
            "exp": now + round(self.ttl),
            "iat": now,
            "jti": str(uuid.uuid4()),
            "iss": ISSUER,
            "sub": f"service-account-{client_id}",
            "typ": "Bearer",
            "azp": client_id,
            "scope": "cards:read cards:write",
            "clientId": client_id,
        }
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{self.header}.{body}.{self.signatures[self.count % len(self.signatures)]}"

    def response(self, form: dict[str, str]) -> bytes:
        self.count += 1
        client_id = form.get("client_id", "basic-auth-client")
        doc = {
            "access_token": self.token(client_id),
            "expires_in": int(self.ttl) if float(self.ttl).is_integer() else self.ttl,
            "refresh_expires_in": 0,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "scope": "cards:read cards:write",
        }
        return json.dumps(doc, separators=(",", ":")).encode()


class Stats:
    def __init__(self) -> None:
        self.total = 0
        self.by_path: dict[str, int] = {}
        self.started = time.time()

    def doc(self) -> bytes:
        return json.dumps({"total": self.total, "by_path": self.by_path, "since": self.started}).encode()


class HttpProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1 with keep-alive; one request at a time per connection (httpx does not pipeline)."""

    def __init__(self, issuer: Issuer, stats: Stats) -> None:
        self.issuer = issuer
        self.stats = stats
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEADER:
                    self._reply(431, b'{"error":"header too large"}', close=True)
                return
            head = self.buf[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if length > MAX_BODY:
                self._reply(413, b'{"error":"body too large"}', close=True)
                return
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            method, path, *_ = head[0].split(" ")
            self._handle(method, path.split("?", 1)[0], body, headers.get("connection", "").lower() == "close")

    def _handle(self, method: str, path: str, body: bytes, close: bool) -> None:
        if method == "POST" and path == TOKEN_PATH:
            self.stats.total += 1
            self.stats.by_path[path] = self.stats.by_path.get(path, 0) + 1
            form = dict(parse_qsl(body.decode("latin-1")))
            self._reply(200, self.issuer.response(form), close=close)
        elif path == "/_stats" and method == "GET":
            self._reply(200, self.stats.doc(), close=close)
        elif path == "/_stats/reset" and method == "POST":
            self.stats.total, self.stats.by_path, self.stats.started = 0, {}, time.time()
            self._reply(200, self.stats.doc(), close=close)
        else:
            self._reply(404, b'{"error":"not found"}', close=close)

    def _reply(self, status: int, body: bytes, *, close: bool = False) -> None:
        assert self.transport is not None
        reason = {200: "OK", 404: "Not Found", 413: "Payload Too Large", 431: "Header Too Large"}.get(status, "")
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
            f"Pragma: no-cache\r\nContent-Length: {len(body)}\r\n"
            f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
        )
        self.transport.write(head.encode("latin-1") + body)
        if close:
            self.transport.close()
            self.transport = None


async def serve(port: int, ttl: float, opaque: bool) -> None:
    loop = asyncio.get_running_loop()
    issuer, stats = Issuer(ttl, opaque), Stats()
    server = await loop.create_server(lambda: HttpProtocol(issuer, stats), "127.0.0.1", port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"READY http://127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ttl", type=float, default=30.0, help="expires_in of every token, seconds")
    ap.add_argument("--opaque", action="store_true", help="short opaque tokens instead of ~1 KB JWTs")
    args = ap.parse_args(argv)
    asyncio.run(serve(args.port, args.ttl, args.opaque))
    return 0


if __name__ == "__main__":
    sys.exit(main())
