"""The reader and the auth helpers against a running ``syncd run`` and the real oidc-provider.

One daemon (a subprocess) rotates 3-second tokens of the ``card`` client into a
file for the whole module. A small resource server on 127.0.0.1 accepts a
bearer token only if the IdP's introspection endpoint says it is active, so a
token revoked at the IdP gets a real 401.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from syncd.client import AsyncTokenReader, SyncdAuth, SyncdRequestsAuth, TokenReader
from syncd.payload import TokenPayload, fingerprint
from syncd.stores.reading import Fetched
from tests.peers.servers import OidcServer

pytestmark = pytest.mark.integration

CLIENT = "card"
INTROSPECTOR = "extra3"


# --------------------------------------------------------------------------- the daemon


@dataclass
class Daemon:
    token_file: Path
    log_path: Path
    proc: subprocess.Popen[bytes]

    def current(self) -> TokenPayload | None:
        try:
            return TokenPayload.from_json(self.token_file.read_text())
        except (OSError, ValueError):
            return None

    def wait_for_new_token(self, after: str | None, timeout: float = 10.0) -> TokenPayload:
        """Poll the store until it holds a token other than ``after``; return it (just written)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"syncd run exited with {self.proc.returncode}:\n{self.log_tail()}")
            p = self.current()
            if p is not None and p.fingerprint != after:
                return p
            time.sleep(0.005)
        pytest.fail(f"syncd wrote no new token within {timeout}s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])


@pytest.fixture(scope="module")
def daemon(oidc_server: OidcServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    work = tmp_path_factory.mktemp("syncd-client-live")
    card = oidc_server.client(CLIENT)
    (work / "card.secret").write_text(card.client_secret)
    (work / "card.secret").chmod(0o600)
    config = work / "syncd.toml"
    config.write_text(
        f"""
[daemon]
listen = "127.0.0.1:0"
log_format = "console"

[defaults]
min_remaining = "1s"

[stores.local]
type = "file"
directory = "{work / "tokens"}"

[[credentials]]
name = "card"
token_url = "{oidc_server.token_url}"
client_id = "{card.client_id}"
client_secret = {{ file = "{work / "card.secret"}" }}
targets = [{{ store = "local", key = "card.json" }}]
"""
    )
    syncd_bin = Path(sys.executable).parent / "syncd"
    log_path = work / "syncd.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(syncd_bin), "run", "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    d = Daemon(work / "tokens" / "card.json", log_path, proc)
    try:
        d.wait_for_new_token(None, timeout=30)
        yield d
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


# --------------------------------------------------------------------------- no stampede


def test_sixteen_threads_one_read_per_rotation_and_never_an_expired_token(daemon: Daemon) -> None:
    # 3-second tokens leave a default grace of ~0.3 s after refresh_after for syncd's write to
    # land; on a busy 2-core CI box give it 0.5 s so that "one read per rotation" stays exact.
    reader = TokenReader(f"file://{daemon.token_file}", refresh_grace=0.5)
    reads: list[tuple[float, TokenPayload]] = []
    reads_lock = threading.Lock()
    real_fetch = reader._fetch

    def counting_fetch(now: float) -> Fetched:
        fetched = real_fetch(now)
        with reads_lock:
            reads.append((time.time(), fetched.payload))
        return fetched

    reader._fetch = counting_fetch  # type: ignore[method-assign]

    # Start right after a write so the run covers whole rotations.
    daemon.wait_for_new_token(daemon.wait_for_new_token(None).fingerprint)
    stop = time.monotonic() + 8.0
    received: list[tuple[float, str]] = []
    failures: list[BaseException] = []
    barrier = threading.Barrier(16)

    def caller() -> None:
        mine: list[tuple[float, str]] = []
        barrier.wait()
        try:
            while time.monotonic() < stop:
                token = reader.get()
                mine.append((time.time(), fingerprint(token)))
                time.sleep(0.002)
        except BaseException as exc:
            failures.append(exc)
        with reads_lock:
            received.extend(mine)

    threads = [threading.Thread(target=caller, name=f"caller-{i}") for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures, failures

    by_fp = {p.fingerprint: p for _, p in reads}
    # Exactly one store read per rotation the reader observed: every read brought a new token.
    assert len(reads) == len(by_fp), [(round(t, 3), p.fingerprint) for t, p in reads]
    assert reader.reads == len(reads)
    rotations = len(by_fp) - 1
    assert rotations >= 4, f"only {rotations} rotations in 8 s:\n{daemon.log_tail()}"
    # No stampede and no caller ever got an expired token.
    assert len(received) > 16 * 100
    for t, fp in received:
        assert fp in by_fp
        assert t < by_fp[fp].expires_at, f"a caller got {fp} {t - by_fp[fp].expires_at:.3f}s after it expired"
    # Each rotation was picked up shortly after refresh_after, long before the old token expired.
    for (_, prev), (t, new) in zip(reads, reads[1:], strict=False):
        assert new.issued_at >= prev.refresh_after - 0.01
        assert t < prev.expires_at - 0.5


# --------------------------------------------------------------------------- 401 handling


@dataclass
class ResourceServer:
    """Accepts a bearer token only if the IdP's introspection endpoint says it is active."""

    introspection_url: str
    auth: tuple[str, str]
    hits: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def check(self, header: str) -> tuple[int, dict[str, Any]]:
        scheme, _, token = header.partition(" ")
        with self.lock:
            self.hits.append(fingerprint(token) if token else "-")
        if scheme != "Bearer" or not token:
            return 401, {"error": "invalid_request"}
        info = httpx.post(self.introspection_url, data={"token": token}, auth=self.auth, trust_env=False).json()
        if not info.get("active"):
            return 401, {"error": "invalid_token"}
        return 200, {"client_id": info.get("client_id"), "scope": info.get("scope")}

    def reset(self) -> None:
        with self.lock:
            self.hits.clear()


@pytest.fixture(scope="module")
def resource_server(oidc_server: OidcServer) -> Iterator[ResourceServer]:
    intro = oidc_server.client(INTROSPECTOR)
    rs = ResourceServer(oidc_server.introspection_url, (intro.client_id, intro.client_secret))

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, doc = rs.check(self.headers.get("Authorization", ""))
            doc["echo"] = body.decode()
            data = json.dumps(doc).encode()
            self.send_response(status)
            if status == 401:
                self.send_header("WWW-Authenticate", f'Bearer error="{doc["error"]}"')
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = _serve
        do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    rs.url = f"http://127.0.0.1:{server.server_address[1]}/cards"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rs
    server.shutdown()
    server.server_close()


def revoke(oidc_server: OidcServer, token: str) -> None:
    card = oidc_server.client(CLIENT)
    r = httpx.post(
        oidc_server.revocation_url,
        data={"token": token, "token_type_hint": "access_token"},
        auth=(card.client_id, card.client_secret),
        trust_env=False,
    )
    assert r.status_code == 200, r.text


def held(reader: TokenReader | AsyncTokenReader) -> str | None:
    """The fingerprint in the reader's cache, looked at without triggering a read."""
    entry = reader._cache.state.entry
    return entry.payload.fingerprint if entry is not None else None


def _attempts() -> range:
    # The scenarios race a 3-second rotation; a run that lands on the wrong side of it is retried.
    return range(3)


def test_httpx_sync_401_retry_with_the_newer_token(
    daemon: Daemon, oidc_server: OidcServer, resource_server: ResourceServer
) -> None:
    for _ in _attempts():
        a = daemon.wait_for_new_token(daemon.wait_for_new_token(None).fingerprint)
        reader = TokenReader(f"file://{daemon.token_file}", refresh_grace=10.0)
        assert reader.get() == a.access_token.get_secret_value()
        b = daemon.wait_for_new_token(a.fingerprint)  # syncd has written a newer token
        revoke(oidc_server, a.access_token.get_secret_value())
        resource_server.reset()
        with httpx.Client(auth=SyncdAuth(reader), trust_env=False) as http:
            resp = http.post(resource_server.url, content=b"charge-42")
        if resource_server.hits[:1] != [a.fingerprint]:
            continue  # the reader had already moved to B on its own: no 401 to test; try again
        assert resp.status_code == 200, resp.text
        assert resp.json()["client_id"] == CLIENT and resp.json()["echo"] == "charge-42"
        assert [h.status_code for h in resp.history] == [401]
        assert resource_server.hits == [a.fingerprint, b.fingerprint]
        assert reader.reads == 2
        return
    pytest.fail("could not hold a replaced token long enough in 3 attempts")


def test_httpx_sync_401_reaches_the_caller_when_the_store_has_the_revoked_token(
    daemon: Daemon, oidc_server: OidcServer, resource_server: ResourceServer
) -> None:
    for _ in _attempts():
        a = daemon.wait_for_new_token(daemon.wait_for_new_token(None).fingerprint)
        reader = TokenReader(f"file://{daemon.token_file}")
        resource_server.reset()
        with httpx.Client(auth=SyncdAuth(reader), trust_env=False) as http:
            assert http.get(resource_server.url).status_code == 200
            revoke(oidc_server, a.access_token.get_secret_value())
            resp = http.get(resource_server.url)
        if held(reader) != a.fingerprint:
            continue  # syncd rotated during the exchange; the store no longer held the revoked token
        assert resp.status_code == 401
        assert resp.json()["error"] == "invalid_token"
        assert resource_server.hits == [a.fingerprint, a.fingerprint]  # exactly 2: no retry
        assert reader.reads == 2  # the first read and exactly one forced re-read
        return
    pytest.fail("syncd rotated during every attempt")


def test_httpx_async_401_both_cases(daemon: Daemon, oidc_server: OidcServer, resource_server: ResourceServer) -> None:
    async def replaced() -> bool:
        a = await asyncio.to_thread(lambda: daemon.wait_for_new_token(daemon.wait_for_new_token(None).fingerprint))
        reader = AsyncTokenReader(f"file://{daemon.token_file}", refresh_grace=10.0)
        assert await reader.get() == a.access_token.get_secret_value()
        b = await asyncio.to_thread(daemon.wait_for_new_token, a.fingerprint)
        revoke(oidc_server, a.access_token.get_secret_value())
        resource_server.reset()
        async with httpx.AsyncClient(auth=SyncdAuth(reader), trust_env=False) as http:
            resp = await http.get(resource_server.url)
        if resource_server.hits[:1] != [a.fingerprint]:
            return False
        assert resp.status_code == 200, resp.text
        assert [h.status_code for h in resp.history] == [401]
        assert resource_server.hits == [a.fingerprint, b.fingerprint]
        assert reader.reads == 2
        return True

    async def same() -> bool:
        a = await asyncio.to_thread(lambda: daemon.wait_for_new_token(daemon.wait_for_new_token(None).fingerprint))
        reader = AsyncTokenReader(f"file://{daemon.token_file}")
        resource_server.reset()
        async with httpx.AsyncClient(auth=SyncdAuth(reader), trust_env=False) as http:
            assert (await http.get(resource_server.url)).status_code == 200
            revoke(oidc_server, a.access_token.get_secret_value())
            resp = await http.get(resource_server.url)
        if held(reader) != a.fingerprint:
            return False
        assert resp.status_code == 401
        assert resource_server.hits == [a.fingerprint, a.fingerprint]
        assert reader.reads == 2
        return True

    for case in (replaced, same):
        assert any(asyncio.run(case()) for _ in _attempts()), f"{case.__name__}: raced the rotation 3 times"


def test_requests_401_both_cases(daemon: Daemon, oidc_server: OidcServer, resource_server: ResourceServer) -> None:
    def session(reader: TokenReader) -> requests.Session:
        s = requests.Session()
        s.trust_env = False
        s.auth = SyncdRequestsAuth(reader)
        return s

    def replaced() -> bool:
        a = daemon.wait_for_new_token(daemon.wait_for_new_token(None).fingerprint)
        reader = TokenReader(f"file://{daemon.token_file}", refresh_grace=10.0)
        assert reader.get() == a.access_token.get_secret_value()
        b = daemon.wait_for_new_token(a.fingerprint)
        revoke(oidc_server, a.access_token.get_secret_value())
        resource_server.reset()
        with session(reader) as s:
            resp = s.post(resource_server.url, data=b"charge-43", timeout=10)
        if resource_server.hits[:1] != [a.fingerprint]:
            return False
        assert resp.status_code == 200, resp.text
        assert resp.json()["echo"] == "charge-43"
        assert [h.status_code for h in resp.history] == [401]
        assert resource_server.hits == [a.fingerprint, b.fingerprint]
        assert reader.reads == 2
        return True

    def same() -> bool:
        a = daemon.wait_for_new_token(daemon.wait_for_new_token(None).fingerprint)
        reader = TokenReader(f"file://{daemon.token_file}")
        resource_server.reset()
        with session(reader) as s:
            assert s.get(resource_server.url, timeout=10).status_code == 200
            revoke(oidc_server, a.access_token.get_secret_value())
            resp = s.get(resource_server.url, timeout=10)
        if held(reader) != a.fingerprint:
            return False
        assert resp.status_code == 401
        assert resp.json()["error"] == "invalid_token"
        assert resource_server.hits == [a.fingerprint, a.fingerprint]
        assert reader.reads == 2
        return True

    for case in (replaced, same):
        assert any(case() for _ in _attempts()), f"{case.__name__}: raced the rotation 3 times"
