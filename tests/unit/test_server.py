"""/livez /readyz /metrics /status against an engine whose state is set by hand (no IdP, no scheduler).

The rules are checked here with a fake clock; tests/integration/test_observability_engine.py
shows the same endpoints on a running engine (a paused scheduler, a dead IdP).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from syncd import __version__
from syncd.config import load_config
from syncd.engine import Engine
from syncd.metrics import CONTENT_TYPE
from syncd.payload import TokenPayload, from_rfc3339
from syncd.server import build_app

SECRET = "calm-secret-0123456789"
TOKEN = "tok-" + "A1b2C3d4" * 6
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def engine(tmp_path, monkeypatch) -> Engine:
    monkeypatch.setenv("UNIT_CALM_SECRET", SECRET)
    cfg = load_config(
        data={
            "daemon": {"listen": "127.0.0.1:0", "liveness_threshold": "30s"},
            "stores": {"local": {"type": "file", "directory": str(tmp_path)}},
            "credentials": [
                {
                    "name": "calm",
                    "token_url": "http://127.0.0.1:9/token",
                    "client_id": "calm",
                    "client_secret": {"env": "UNIT_CALM_SECRET"},
                    "targets": [{"store": "local", "key": "calm.json"}, {"store": "local", "key": "calm-2.json"}],
                },
                {
                    "name": "card",
                    "token_url": "http://127.0.0.1:9/token",
                    "client_id": "card",
                    "client_secret": {"env": "UNIT_CALM_SECRET"},
                    "targets": [{"store": "local", "key": "card.json"}],
                },
            ],
        }
    )
    eng = Engine(cfg, clock=Clock(T0))
    eng.setup()
    return eng


def hold_token(engine: Engine, name: str, *, expired_targets: tuple[int, ...] = ()) -> TokenPayload:
    """Put the engine in the state a successful run leaves, optionally with some targets expired."""
    now = engine.clock()
    st = engine.credentials[name]
    tok = TokenPayload(
        credential=name,
        access_token=SecretStr(TOKEN),
        issued_at=now - 10,
        expires_at=now + 290,
        refresh_after=now + 140,
        scope="cards:read",
    )
    st.token, st.state, st.last_mint, st.next_run = tok, "ok", now - 10, now + 140
    for i, ts in enumerate(st.targets):
        ts.stored_fingerprint = tok.fingerprint
        ts.stored_expires_at = now - 5 if i in expired_targets else tok.expires_at
        ts.last_success = now - 10
    return tok


async def client_for(engine: Engine) -> TestClient:
    client = TestClient(TestServer(build_app(engine)))
    await client.start_server()
    return client


async def test_livez_follows_the_heartbeats_only(engine):
    clock: Clock = engine.clock  # type: ignore[assignment]
    client = await client_for(engine)
    try:
        # not started yet: no scheduler
        resp = await client.get("/livez")
        assert resp.status == 503 and (await resp.json())["scheduler_running"] is False
        engine.scheduler = SimpleNamespace(running=True)  # type: ignore[assignment]
        engine.loop_heartbeat = engine.scheduler_heartbeat = clock.t
        # the IdP and the stores are irrelevant: nothing is ready, everything failed, still alive
        for st in engine.credentials.values():
            st.state, st.consecutive_failures = "fatal", 12
        resp = await client.get("/livez")
        body = await resp.json()
        assert resp.status == 200 and body["status"] == "ok", body
        assert resp.headers["Cache-Control"] == "no-store"
        # scheduler heartbeat older than liveness_threshold (30 s)
        clock.t += 31
        engine.loop_heartbeat = clock.t
        resp = await client.get("/livez")
        body = await resp.json()
        assert resp.status == 503 and body["status"] == "stuck" and body["scheduler_heartbeat_age"] == 31
        # loop heartbeat stale, scheduler fine
        engine.scheduler_heartbeat = clock.t
        engine.loop_heartbeat = clock.t - 45
        resp = await client.get("/livez")
        assert resp.status == 503 and (await resp.json())["loop_heartbeat_age"] == 45
        engine.loop_heartbeat = clock.t - 29
        assert (await client.get("/livez")).status == 200
    finally:
        await client.close()


async def test_readyz_names_every_credential_and_target_without_an_unexpired_token(engine):
    client = await client_for(engine)
    try:
        hold_token(engine, "calm", expired_targets=(1,))
        engine.credentials["card"].last_error = {"class": "TransientMintError", "message": "IdP answered 503"}
        resp = await client.get("/readyz")
        body = await resp.json()
        assert resp.status == 503 and body["status"] == "not ready"
        missing = {(e["credential"], e["target"]): e for e in body["not_ready"]}
        assert set(missing) == {("calm", "local:calm-2.json"), ("card", "local:card.json")}
        assert missing[("calm", "local:calm-2.json")]["reason"] == "expired"
        assert missing[("card", "local:card.json")]["reason"] == "no token written yet"
        assert missing[("card", "local:card.json")]["last_error"] == "IdP answered 503"
        # once every target holds an unexpired token: ready
        hold_token(engine, "calm")
        hold_token(engine, "card")
        resp = await client.get("/readyz")
        assert resp.status == 200 and (await resp.json()) == {"status": "ready", "credentials": 2}
        # ... until the clock passes the stored expiry
        engine.clock.t += 291  # type: ignore[attr-defined]
        body = await (await client.get("/readyz")).json()
        assert len(body["not_ready"]) == 3 and {e["reason"] for e in body["not_ready"]} == {"expired"}
    finally:
        await client.close()


async def test_status_has_every_design_field_and_never_a_token_or_secret(engine):
    client = await client_for(engine)
    try:
        tok = hold_token(engine, "calm", expired_targets=(1,))
        st = engine.credentials["calm"]
        st.state, st.consecutive_failures = "degraded", 3
        # an error message that (wrongly) quotes the token: the response is redacted anyway
        st.targets[1].last_error = {
            "class": "TransientStoreError",
            "message": f"store said: Authorization: Bearer {TOKEN}",
            "code": "ENOSPC",
            "kind": "transient",
        }
        st.last_error = st.targets[1].last_error
        st.targets[1].failures = 3
        resp = await client.get("/status")
        text = await resp.text()
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
        assert TOKEN not in text and SECRET not in text
        doc = json.loads(text)
        assert doc["version"] == __version__ and from_rfc3339(doc["now"]) == pytest.approx(T0, abs=0.001)
        calm = next(c for c in doc["credentials"] if c["name"] == "calm")
        # docs/design.md "Health is about what consumers read": state, last mint, expires_at, next refresh, consecutive failures, last error
        assert calm["state"] == "degraded" and calm["healthy"] is False
        assert calm["fingerprint"] == tok.fingerprint
        assert from_rfc3339(calm["last_mint"]) == pytest.approx(T0 - 10, abs=0.001)
        assert from_rfc3339(calm["expires_at"]) == pytest.approx(tok.expires_at, abs=0.001)
        assert calm["expires_in"] == pytest.approx(290, abs=0.01)
        assert from_rfc3339(calm["next_refresh"]) == pytest.approx(T0 + 140, abs=0.001)
        assert calm["consecutive_failures"] == 3
        assert calm["last_error"]["class"] == "TransientStoreError" and calm["last_error"]["code"] == "ENOSPC"
        assert "[redacted]" in calm["last_error"]["message"]
        # per target: last success, stored expires_at
        first, second = calm["targets"]
        assert first["target"] == "local:calm.json" and first["fresh"] is True
        assert from_rfc3339(first["last_success"]) == pytest.approx(T0 - 10, abs=0.001)
        assert from_rfc3339(first["stored_expires_at"]) == pytest.approx(tok.expires_at, abs=0.001)
        assert second["fresh"] is False and second["failures"] == 3
        card = next(c for c in doc["credentials"] if c["name"] == "card")
        assert card["fingerprint"] is None and card["expires_at"] is None and card["healthy"] is False
        # no field anywhere is named like a secret
        keys: set[str] = set()

        def walk(v):
            if isinstance(v, dict):
                keys.update(v)
                for x in v.values():
                    walk(x)
            elif isinstance(v, list):
                for x in v:
                    walk(x)

        walk(doc)
        assert not keys & {"access_token", "token", "client_secret", "secret"}
    finally:
        await client.close()


async def test_metrics_endpoint_is_prometheus_text(engine):
    client = await client_for(engine)
    try:
        engine.metrics.init_credential("calm", ["local:calm.json"])
        resp = await client.get("/metrics")
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain; version=")
        names = {f.name for f in text_string_to_metric_families(await resp.text())}
        assert {"syncd_build_info", "syncd_mints", "syncd_consecutive_failures"} <= names
        assert (await client.get("/nope")).status == 404
    finally:
        await client.close()


async def test_metrics_scrapes_run_on_the_loop_in_slices_and_see_every_change(engine, monkeypatch):
    """A scrape renders on the loop, yielding between slices (others run meanwhile), and shows the latest values."""
    import asyncio

    from syncd import server

    monkeypatch.setattr(server, "SCRAPE_SLICE", 0.0)  # a slice per metric family

    parts = []
    real = engine.metrics.snapshot

    def counted_pieces():
        for piece in real():
            parts.append(piece)
            yield piece

    engine.metrics.snapshot = counted_pieces
    client = await client_for(engine)
    try:
        turns = 0

        async def other_work():
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        ticker = asyncio.get_running_loop().create_task(other_work())
        first = await client.get("/metrics")
        ticker.cancel()
        assert first.status == 200
        assert len(parts) > 5 and turns >= len(parts) - 1, "the loop ran other work between families"
        engine.metrics.mints.labels(credential="calm", outcome="ok").inc(7)
        text = await (await client.get("/metrics")).text()
        assert 'syncd_mints_total{credential="calm",outcome="ok"} 7.0' in text
    finally:
        await client.close()


def _without_process_series(text: bytes) -> bytes:
    """The exposition without process_* (CPU seconds and memory move between two reads)."""
    return b"".join(line for line in text.splitlines(keepends=True) if not line.startswith(b"process_"))


async def test_a_scrape_is_byte_for_byte_the_render_in_one_piece(engine, monkeypatch):
    """The page is written part by part (small parts and a slice per part here): the body is exactly
    the one-piece render, Content-Length is its length, HEAD gets the same headers and no body."""
    from syncd import exposition, server

    monkeypatch.setattr(server, "SCRAPE_SLICE", 0.0)
    monkeypatch.setattr(exposition, "PART_SERIES", 2)
    for i in range(40):
        engine.metrics.init_credential(f"many-{i}", [f"local:many-{i}.json", 'local:quo"te\nünï'])
        engine.metrics.writes.labels(f"many-{i}", f"local:many-{i}.json", "ok").inc(i)
    client = await client_for(engine)
    try:
        resp = await client.get("/metrics")
        body = await resp.read()
        assert resp.status == 200
        assert len(list(engine.metrics.render_parts())) > 100, "many parts"
        assert _without_process_series(body) == _without_process_series(engine.metrics.render())
        assert int(resp.headers["Content-Length"]) == len(body)
        assert "Transfer-Encoding" not in resp.headers
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Content-Type"] == CONTENT_TYPE
        head = await client.head("/metrics")
        assert head.status == 200 and await head.read() == b""
        assert head.headers["Content-Type"] == resp.headers["Content-Type"]
        assert abs(int(head.headers["Content-Length"]) - len(body)) < 200, "the same page (process_* aside)"
    finally:
        await client.close()


async def test_a_render_that_fails_is_a_500_and_the_server_goes_on(engine):
    """The page is rendered whole before the response starts, so a failing collector is a plain 500."""

    class Broken:
        def collect(self):
            raise RuntimeError("collector broke")

    engine.metrics.registry.register(Broken())
    client = await client_for(engine)
    try:
        assert (await client.get("/metrics")).status == 500
        assert (await client.get("/livez")).status in (200, 503)
    finally:
        await client.close()


async def test_a_scrape_never_holds_the_whole_page(engine):
    """The page is taken as each family's lines (a pointer per series) and rendered part by part as
    it is written: the memory a scrape needs is a part, not the page (92 MB at 100,000 credentials).
    The client here reads the body in 64 KB pieces and drops them, so the traced peak is the server's."""
    import tracemalloc

    for i in range(5000):
        name = f"fleet-{i:05d}"
        engine.metrics.init_credential(name, [f"local:{name}.json"])
        engine.metrics.token_expiry.labels(name).set(1_700_000_000.5 + i)
    page = len(engine.metrics.render())
    assert page > 3_000_000
    client = await client_for(engine)
    try:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            resp = await client.get("/metrics")
            received = 0
            while chunk := await resp.content.read(65536):
                received += len(chunk)
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
        assert resp.status == 200 and abs(received - page) < 200, "the whole page was sent (process_* aside)"
        assert peak < page / 2, f"a scrape held {peak} bytes for a {page}-byte page"
    finally:
        await client.close()
