"""The HTTP endpoints and log events of a running engine, in-process.

In-process because these tests need to reach inside: pause the scheduler to
make it "stuck", script IdP faults (FakeIdP) and make a store fail with a given
vendor code. The same endpoints on a real ``syncd run`` process are covered in
tests/integration/test_lifecycle_daemon.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncd import logs
from syncd.config import load_config
from syncd.engine import Engine
from syncd.payload import TokenPayload, from_rfc3339
from syncd.server import HttpServer
from syncd.stores.base import FatalStoreError, TransientStoreError, WriteResult
from tests.peers.fake_idp import error, ok
from tests.peers.servers import free_port

SECRET = "engine-secret-0123456789"


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv("OBS_CALM_SECRET", SECRET)


@pytest.fixture
def log_lines() -> Any:
    """JSON log events of this test (parsed), instead of a stream pytest may close under us."""
    buf = io.StringIO()
    logs.configure("info", "json", stream=buf)

    def events(name: str | None = None) -> list[dict[str, Any]]:
        out = [json.loads(line) for line in buf.getvalue().splitlines() if line.startswith("{")]
        return [e for e in out if name is None or e.get("event") == name]

    events.text = buf.getvalue  # type: ignore[attr-defined]
    yield events
    logs.configure("info", "json", stream=sys.__stderr__)


def config(token_url: str, out: Path, *, targets: int = 1, **overrides: Any):
    defaults = {
        "min_remaining": 1.0,
        "retry_min": 0.2,
        "retry_max": 0.5,
        "fatal_retry": 1.0,
        "token_lifetime": 3.0,
        "jitter": 0.1,
    }
    daemon = {"listen": "127.0.0.1:0", "http_timeout": 1.0, "connect_timeout": 0.5}
    daemon.update(overrides.pop("daemon", {}))
    defaults.update(overrides)
    return load_config(
        data={
            "daemon": daemon,
            "defaults": defaults,
            "stores": {"local": {"type": "file", "directory": str(out)}},
            "credentials": [
                {
                    "name": "calm",
                    "token_url": token_url,
                    "client_id": "calm",
                    "client_secret": {"env": "OBS_CALM_SECRET"},
                    "targets": [{"store": "local", "key": f"calm-{i}.json"} for i in range(targets)],
                }
            ],
        }
    )


class Daemon:
    """An engine and its HTTP server on this event loop, with an async client for the endpoints."""

    def __init__(self, engine: Engine, server: HttpServer, client: httpx.AsyncClient) -> None:
        self.engine, self.server, self.client = engine, server, client

    async def get(self, path: str) -> httpx.Response:
        return await self.client.get(f"http://127.0.0.1:{self.server.port}{path}")

    async def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        text = (await self.get("/metrics")).text
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }


@asynccontextmanager
async def running(cfg, wrap_store=None) -> AsyncIterator[Daemon]:
    engine = Engine(cfg)
    engine.setup()
    if wrap_store is not None:
        store = wrap_store(engine.stores["local"])
        engine.stores["local"] = store
        for st in engine.credentials.values():
            for ts in st.targets:
                ts.store = store
    server = HttpServer(engine, "127.0.0.1", 0)
    await server.start()
    await engine.start()
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        try:
            yield Daemon(engine, server, client)
        finally:
            await engine.stop(drain_timeout=2)
            await server.stop()


async def wait_until(predicate, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def M(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


# --------------------------------------------------------------------------- /livez


async def test_livez_ignores_a_dead_idp_and_fails_when_the_scheduler_is_stuck(tmp_path):
    dead_idp = f"http://127.0.0.1:{free_port()}/auth/realms/vgs/protocol/openid-connect/token"
    cfg = config(dead_idp, tmp_path, daemon={"liveness_threshold": "1.5s"})
    async with running(cfg) as d:
        # The IdP refuses every connection: not ready, retrying, and alive.
        for _ in range(12):
            live = await d.get("/livez")
            assert live.status_code == 200, live.text
            await asyncio.sleep(0.25)
        ready = await d.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["not_ready"] == [
            {
                "credential": "calm",
                "target": "local:calm-0.json",
                "reason": "no token written yet",
                "state": "retrying",
                "last_error": ready.json()["not_ready"][0]["last_error"],
            }
        ]
        assert (await d.metrics())[M("syncd_mints_total", credential="calm", outcome="transient")] >= 2

        # A scheduler that stops processing jobs: its heartbeat ages past the threshold.
        assert d.engine.scheduler is not None
        d.engine.scheduler.pause()

        async def stuck() -> httpx.Response | None:
            r = await d.get("/livez")
            return r if r.status_code == 503 else None

        body = (await wait_until(stuck, 6, "/livez 503 with a paused scheduler")).json()
        assert body["status"] == "stuck" and body["scheduler_heartbeat_age"] >= 1.5
        # The loop kept beating (every 1 s) after the scheduler stopped: a bound relative to the
        # scheduler's age, not a wall-clock limit a loaded machine could miss.
        assert body["loop_heartbeat_age"] < body["scheduler_heartbeat_age"], "the loop itself is fine"

        d.engine.scheduler.resume()

        async def alive() -> bool:
            return (await d.get("/livez")).status_code == 200

        await wait_until(alive, 6, "/livez 200 again after resume")


# --------------------------------------------------------------------------- /metrics vs what happened


async def test_metrics_and_status_follow_a_503_burst(fake_idp, tmp_path):
    fake_idp.clients = {"calm": SECRET}
    fake_idp.script([ok(ttl=3), error(503, "temporarily_unavailable"), error(503), error(503)])
    fake_idp.default = ok(ttl=3)
    cfg = config(fake_idp.token_url, tmp_path, targets=2)
    failures_seen: list[float] = []
    status_during: list[dict[str, Any]] = []
    async with running(cfg) as d:

        async def burst_over() -> bool:
            m = await d.metrics()
            failures = m[M("syncd_consecutive_failures", credential="calm")]
            failures_seen.append(failures)
            if failures > 0 and not status_during:
                status_during.append((await d.get("/status")).json()["credentials"][0])
            return len(fake_idp.tokens) >= 3 and failures == 0

        await wait_until(burst_over, 15, "the 503 burst to pass and two more mints")

        # A quiet moment: two identical scrapes with /status and the files read in between.
        # Only syncd's own series: the process collector's CPU seconds move with every scrape.
        async def syncd_series() -> list[str]:
            return [line for line in (await d.get("/metrics")).text.splitlines() if line.startswith("syncd_")]

        async def snapshot() -> tuple[Any, Any, Any] | None:
            before = await syncd_series()
            status = (await d.get("/status")).json()["credentials"][0]
            stored = [TokenPayload.from_json((tmp_path / f"calm-{i}.json").read_text()) for i in range(2)]
            after = await d.metrics()
            same = before == await syncd_series()
            return (after, status, stored) if same and not d.engine.credentials["calm"].running else None

        m, status, stored = await wait_until(snapshot, 10, "a quiet moment between runs")
        requests, tokens = fake_idp.count, len(fake_idp.tokens)

    # the counters are exactly what the IdP saw
    assert m[M("syncd_mints_total", credential="calm", outcome="transient")] == 3
    assert m[M("syncd_mints_total", credential="calm", outcome="ok")] == tokens
    assert m[M("syncd_mints_total", credential="calm", outcome="fatal")] == 0
    assert m[M("syncd_mint_duration_seconds_count")] == requests == tokens + 3
    for i in range(2):
        target = f"local:calm-{i}.json"
        assert m[M("syncd_writes_total", credential="calm", target=target, outcome="ok")] == tokens
        assert m[M("syncd_writes_total", credential="calm", target=target, outcome="transient")] == 0
        # the gauges are what the store holds and what /status says
        expiry = m[M("syncd_target_token_expiry_timestamp_seconds", credential="calm", target=target)]
        assert expiry == pytest.approx(stored[i].expires_at, abs=0.001)
        assert expiry == pytest.approx(from_rfc3339(status["targets"][i]["stored_expires_at"]), abs=0.001)
        last = m[M("syncd_target_last_success_timestamp_seconds", credential="calm", target=target)]
        assert last == pytest.approx(from_rfc3339(status["targets"][i]["last_success"]), abs=0.001)
    assert m[M("syncd_write_duration_seconds_count", store="local")] == 2 * tokens
    held = m[M("syncd_token_expiry_timestamp_seconds", credential="calm")]
    assert held == pytest.approx(from_rfc3339(status["expires_at"]), abs=0.001)
    assert held == pytest.approx(stored[0].expires_at, abs=0.001)
    # The lifetime the alerts divide by: the held token's expires_at - issued_at.
    lifetime = m[M("syncd_token_lifetime_seconds", credential="calm")]
    assert lifetime == pytest.approx(stored[0].expires_at - stored[0].issued_at, abs=0.001)
    nxt = m[M("syncd_next_refresh_timestamp_seconds", credential="calm")]
    assert nxt == pytest.approx(from_rfc3339(status["next_refresh"]), abs=0.001)
    assert m[M("syncd_schedule_lateness_seconds_count")] >= requests
    assert m[M("syncd_consecutive_failures", credential="calm")] == 0 and status["consecutive_failures"] == 0

    # during the burst: failures counted in a row, the error on /status, then back to 0
    assert max(failures_seen) >= 1 and failures_seen[-1] == 0
    assert status_during, "a scrape saw consecutive_failures > 0"
    during = status_during[0]
    assert during["consecutive_failures"] >= 1 and during["state"] == "retrying"
    assert during["last_error"]["class"] == "TransientMintError" and during["last_error"]["status"] == 503
    assert status["state"] == "ok" and status["last_error"] is None


# --------------------------------------------------------------------------- log events


class FailingStore:
    """Raises the given store errors in turn, then writes through."""

    def __init__(self, inner, errors: list[Exception]) -> None:
        self.inner, self.name, self.errors = inner, inner.name, list(errors)

    async def write(self, key, payload, *, target=None) -> WriteResult:
        if self.errors:
            raise self.errors.pop(0)
        return await self.inner.write(key, payload, target=target)

    async def read(self, key, *, target=None):
        return await self.inner.read(key, target=target)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def plan(self, key, wpd, *, target=None):
        return []


async def test_one_event_per_mint_and_write_with_the_fields_on_call_needs(fake_idp, tmp_path, log_lines):
    fake_idp.default = ok(ttl=3)
    errors = [
        TransientStoreError("cannot write: the disk is full (ENOSPC)", code="ENOSPC"),
        FatalStoreError("AccessDeniedException: not authorized to perform PutSecretValue", code="AccessDenied"),
    ]
    async with running(config(fake_idp.token_url, tmp_path), lambda s: FailingStore(s, errors)) as d:

        async def written() -> bool:
            return d.engine.credentials["calm"].targets[0].last_success is not None

        await wait_until(written, 10, "a successful write after two failures")
    mints, writes = log_lines("mint"), log_lines("write")
    assert len(mints) == fake_idp.count, "one mint event per token request"
    ok_mint = mints[0]
    assert ok_mint["outcome"] == "ok" and ok_mint["level"] == "info" and ok_mint["credential"] == "calm"
    for key in ("fingerprint", "expires_at", "duration", "lifetime", "refresh_after"):
        assert key in ok_mint, key
    assert ok_mint["fingerprint"] == TokenPayload.from_json((tmp_path / "calm-0.json").read_text()).fingerprint

    assert [w["outcome"] for w in writes] == ["transient", "fatal", "ok"], "one write event per attempt"
    for w in writes:
        for key in ("credential", "target", "fingerprint", "expires_at", "duration", "outcome"):
            assert key in w, (key, w)
        assert w["target"] == "local:calm-0.json" and w["fingerprint"] == ok_mint["fingerprint"]
    transient, fatal, good = writes
    assert transient["error_class"] == "TransientStoreError" and transient["error_code"] == "ENOSPC"
    assert transient["error_kind"] == "transient" and transient["level"] == "warning" and "retry_in" in transient
    assert fatal["error_class"] == "FatalStoreError" and fatal["error_code"] == "AccessDenied"
    assert fatal["error_kind"] == "fatal"
    assert good["level"] == "info" and "error_class" not in good
    assert fake_idp.tokens[0] not in log_lines.text() and SECRET not in log_lines.text()


async def test_mint_errors_carry_class_status_and_oauth_code(fake_idp, tmp_path, log_lines):
    fake_idp.default = error(401, "invalid_client", "Invalid client or Invalid client credentials")
    async with running(config(fake_idp.token_url, tmp_path)):
        await asyncio.to_thread(fake_idp.wait_for_requests, 1)
        await asyncio.sleep(0.1)
    (event, *_) = log_lines("mint")
    assert event["level"] == "error" and event["outcome"] == "fatal" and event["credential"] == "calm"
    assert event["error_class"] == "FatalMintError" and event["error_code"] == "invalid_client"
    assert event["error_status"] == 401 and event["error_kind"] == "fatal"
    assert event["serving_last_good"] is False and "retry_in" in event and "duration" in event
    assert SECRET not in log_lines.text()
