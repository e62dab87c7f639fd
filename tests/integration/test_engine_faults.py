"""Engine behaviour under IdP and store faults.

The IdP here is the in-process FakeIdP: a real server cannot be made to answer
503 bursts, 429 with Retry-After, slow responses or HTML pages on demand. The
engine runs in-process so the tests can watch every write.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from syncd.config import CredentialConfig, load_config
from syncd.engine import Engine
from syncd.payload import TokenPayload
from syncd.stores.base import TransientStoreError, WriteResult
from syncd.stores.file import FileStore
from tests.peers.fake_idp import delay, error, html, ok, retry_after

SECRET = "fake-secret-0123456789"


def config(idp, out: Path, **defaults: Any):
    d = {
        "min_remaining": 1.0,
        "retry_min": 0.2,
        "retry_max": 1.0,
        "fatal_retry": 1.5,
        "token_lifetime": 3.0,
        "jitter": 0.1,
    }
    d.update(defaults)
    return load_config(
        data={
            "daemon": {"http_timeout": 0.5, "connect_timeout": 0.5, "listen": "127.0.0.1:0"},
            "defaults": d,
            "stores": {"local": {"type": "file", "directory": str(out)}},
            "credentials": [
                {
                    "name": "calm",
                    "token_url": idp.token_url,
                    "client_id": "calm",
                    "client_secret": {"env": "FAKE_CALM_SECRET"},
                    "targets": [{"store": "local", "key": "calm.json"}],
                }
            ],
        }
    )


class Recorder:
    """Wraps a store to record (time, payload) of every successful write."""

    def __init__(self, inner, fail_first: int = 0):
        self.inner, self.name, self.fail_first = inner, inner.name, fail_first
        self.writes: list[tuple[float, TokenPayload]] = []
        self.attempts = 0

    async def write(self, key, payload, *, target=None) -> WriteResult:
        self.attempts += 1
        if self.attempts <= self.fail_first:
            raise TransientStoreError(f"injected outage #{self.attempts}", code="injected")
        result = await self.inner.write(key, payload, target=target)
        self.writes.append((time.time(), payload))
        return result

    async def read(self, key, *, target=None):
        return await self.inner.read(key, target=target)

    async def aclose(self):
        await self.inner.aclose()

    def plan(self, key, wpd, *, target=None):
        return []


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv("FAKE_CALM_SECRET", SECRET)


async def run_engine(cfg, seconds: float, fail_first: int = 0) -> tuple[Engine, Recorder]:
    engine = Engine(cfg)
    engine.setup()
    rec = Recorder(engine.stores["local"], fail_first)
    engine.stores["local"] = rec  # type: ignore[assignment]
    for ts in engine.credentials["calm"].targets:
        ts.store = rec  # type: ignore[assignment]
    await engine.start()
    await asyncio.sleep(seconds)
    await engine.stop()
    return engine, rec


def assert_never_expired(rec: Recorder) -> None:
    for when, payload in rec.writes:
        assert payload.expires_at > when, "an expired token was written"


async def test_503_burst_backs_off_and_recovers(fake_idp, tmp_path):
    fake_idp.clients = {"calm": SECRET}
    fake_idp.script([ok(ttl=3)] + [error(503, "temporarily_unavailable")] * 4 + [html(502)])
    fake_idp.default = ok(ttl=3)
    engine, rec = await run_engine(config(fake_idp, tmp_path), 7)
    st = engine.credentials["calm"]
    outcomes = [s for s in engine.metrics.mints.collect()[0].samples if s.name.endswith("_total")]
    counts = {s.labels["outcome"]: s.value for s in outcomes}
    assert counts["transient"] == 5 and counts["ok"] >= 2
    assert st.state == "ok" and st.mint_failures == 0
    assert_never_expired(rec)
    # backoff: the 5 failed attempts were spread, not fired back to back
    times = [r.time for r in fake_idp.requests[1:7]]
    assert times[-1] - times[0] >= 0.2 * 3


async def test_retry_after_is_honoured(fake_idp, tmp_path):
    fake_idp.script([retry_after(429, "2")])
    fake_idp.default = ok(ttl=3)
    # Retry-After is honoured up to max(retry_max, fatal_retry) (policy.backoff_delay)
    engine, rec = await run_engine(config(fake_idp, tmp_path, fatal_retry=5.0), 3)
    first, second = fake_idp.requests[0].time, fake_idp.requests[1].time
    assert second - first >= 1.9, f"retried after {second - first:.2f}s despite Retry-After: 2"
    assert rec.writes


async def test_slow_idp_times_out_and_recovers(fake_idp, tmp_path):
    fake_idp.script([delay(2.0, ok(ttl=3)), delay(2.0, ok(ttl=3))])
    fake_idp.default = ok(ttl=3)
    engine, rec = await run_engine(config(fake_idp, tmp_path), 4)
    mints = {
        s.labels["outcome"]: s.value for s in engine.metrics.mints.collect()[0].samples if s.name.endswith("_total")
    }
    assert mints["transient"] == 2 and mints["ok"] >= 1
    assert engine.credentials["calm"].last_error is None
    assert_never_expired(rec)


@pytest.mark.parametrize("code", ["invalid_client", "unauthorized_client"])
async def test_wrong_secret_is_fatal_no_hot_loop(fake_idp, tmp_path, code):
    fake_idp.script([ok(ttl=30)])
    fake_idp.default = error(401, code, "Invalid client or Invalid client credentials")
    # refresh right away (refresh_at tiny) so the fatal path is exercised while a good token is held
    engine, rec = await run_engine(config(fake_idp, tmp_path, refresh_at=0.01, min_interval=0.1), 5)
    st = engine.credentials["calm"]
    assert st.state == "fatal" and st.last_error["error"] == code
    failed = fake_idp.count - 1
    # fatal_retry 1.5 s +-10 %: at most one attempt per 1.35 s over ~5 s
    assert 1 <= failed <= 4, f"{failed} attempts"
    assert len(rec.writes) == 1, "the last good token stays in the target"
    assert (
        await FileStore.from_config("x", engine.config.stores["local"]).read("calm.json")
    ).fingerprint == rec.writes[0][1].fingerprint


async def test_failed_target_retried_with_same_token(fake_idp, tmp_path):
    fake_idp.default = ok(ttl=20)
    engine, rec = await run_engine(config(fake_idp, tmp_path, token_lifetime=20.0), 3, fail_first=3)
    assert fake_idp.count == 1, "a failed write must not cause a re-mint"
    assert rec.attempts == 4 and len(rec.writes) == 1
    ts = engine.credentials["calm"].targets[0]
    assert ts.failures == 0 and ts.stored_fingerprint == rec.writes[0][1].fingerprint


async def test_startup_adopts_fresh_stored_token(fake_idp, tmp_path):
    fake_idp.default = ok(ttl=60)
    cfg = config(fake_idp, tmp_path, token_lifetime=60.0)
    engine, rec = await run_engine(cfg, 1)
    assert fake_idp.count == 1
    engine2, rec2 = await run_engine(cfg, 1)
    assert fake_idp.count == 1, "a fresh stored token is adopted without minting"
    assert engine2.credentials["calm"].adopted and not rec2.writes
    assert engine2.not_ready() == []


async def test_expired_stored_token_is_replaced(fake_idp, tmp_path):
    fake_idp.default = ok(ttl=1)
    cfg = config(fake_idp, tmp_path)
    await run_engine(cfg, 0.3)
    await asyncio.sleep(1.2)
    fake_idp.default = ok(ttl=3)
    before = fake_idp.count
    engine, rec = await run_engine(cfg, 0.5)
    assert fake_idp.count == before + 1 and not engine.credentials["calm"].adopted


async def test_reload_adds_and_removes(fake_idp, tmp_path):
    fake_idp.default = ok(ttl=30)
    cfg = config(fake_idp, tmp_path, token_lifetime=30.0)
    engine = Engine(cfg)
    await engine.start()
    await asyncio.sleep(0.5)
    data = cfg.model_dump(mode="python")
    new_cred = {
        **TypeAdapter(CredentialConfig).dump_python(cfg.credentials[0], exclude_none=True),
        "name": "card",
        "targets": [{"store": "local", "key": "card.json"}],
    }
    new_cred["client_secret"] = {"env": "FAKE_CALM_SECRET"}
    summary = await engine.reload(
        load_config(
            data={
                "daemon": {"listen": "127.0.0.1:0"},
                "defaults": data["defaults"],
                "stores": {"local": {"type": "file", "directory": str(tmp_path)}},
                "credentials": [new_cred],
            }
        )
    )
    await asyncio.sleep(0.5)
    await engine.stop()
    assert summary["added"] == ["card"] and summary["removed"] == ["calm"]
    assert (tmp_path / "card.json").exists()
    assert list(engine.credentials) == ["card"]
