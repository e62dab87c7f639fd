"""Engine rules that need no server: the mint function is replaced in-process (documented per test)."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import SecretStr

from syncd import engine as engine_mod
from syncd.config import load_config
from syncd.engine import Engine
from syncd.oauth import Token
from syncd.payload import fingerprint


def _config(tmp_path, **defaults):
    d = {"retry_min": 0.2, "retry_max": 0.4, "fatal_retry": 1.0, "min_remaining": 1.0, **defaults}
    return load_config(
        data={
            "daemon": {"listen": "127.0.0.1:0"},
            "defaults": d,
            "stores": {"local": {"type": "file", "directory": str(tmp_path)}},
            "credentials": [
                {"name": "calm", "token_url": "http://127.0.0.1:9/token", "client_id": "x",
                 "client_secret": {"env": "ENGINE_UNIT_SECRET"}, "targets": [{"store": "local", "key": "calm.json"}]}
            ],
        }
    )


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv("ENGINE_UNIT_SECRET", "unit-secret-value")


async def test_unexpected_mint_exception_backs_off(tmp_path, monkeypatch):
    """A bug-shaped exception from the mint path (injected) is retried with backoff, not in a hot loop."""
    calls = []

    async def broken(client, req, *, clock=time.time, deadline=None):
        calls.append(time.time())
        raise RuntimeError("unexpected failure")

    monkeypatch.setattr(engine_mod, "mint", broken)
    engine = Engine(_config(tmp_path, min_interval=0.1))
    await engine.start()
    await asyncio.sleep(2.0)
    await engine.stop()
    st = engine.credentials["calm"]
    assert 3 <= len(calls) <= 12, f"{len(calls)} attempts in 2 s with retry_min 0.2 s"
    assert st.last_error["class"] == "RuntimeError" and st.last_error["kind"] == "transient"
    assert st.state == "retrying"


async def test_missing_secret_is_fatal(tmp_path, monkeypatch):
    """An unset secret env var is a credential problem: fatal pace, message names the variable."""
    monkeypatch.delenv("ENGINE_UNIT_SECRET")
    engine = Engine(_config(tmp_path))
    await engine.start()
    await asyncio.sleep(1.5)
    await engine.stop()
    st = engine.credentials["calm"]
    assert st.state == "fatal" and "ENGINE_UNIT_SECRET" in st.last_error["message"]
    assert st.mint_failures <= 2


async def test_token_never_written_after_expiry(tmp_path, monkeypatch):
    """A mint whose token has already expired by the time writes start (injected) is not written."""

    calls = []

    async def stale(client, req, *, clock=time.time, deadline=None):
        now = clock()
        calls.append(now)
        return Token(access_token=SecretStr("stale-token-abcdef"), token_type="Bearer", scope=None,
                     issued_at=now - 10, expires_at=now - 1, fingerprint=fingerprint("stale-token-abcdef"),
                     lifetime_source="expires_in", server_skew=None)

    monkeypatch.setattr(engine_mod, "mint", stale)
    engine = Engine(_config(tmp_path, min_interval=0.2))
    await engine.start()
    await asyncio.sleep(0.6)
    await engine.stop()
    assert not (tmp_path / "calm.json").exists()
    assert 2 <= len(calls) <= 4, f"{len(calls)} mints in 0.6 s with min_interval 0.2 s"
    assert engine.not_ready()[0]["credential"] == "calm"


async def test_redactor_does_not_grow_with_rotations(tmp_path, monkeypatch):
    """Replaced tokens are forgotten by the log redactor after a bound (injected mint, 100 rotations)."""
    from syncd import logs

    n = 0

    async def fresh(client, req, *, clock=time.time, deadline=None):
        nonlocal n
        n += 1
        now = clock()
        value = f"rotating-token-{n:06d}-abcdef"
        return Token(access_token=SecretStr(value), token_type="Bearer", scope=None, issued_at=now,
                     expires_at=now + 60, fingerprint=fingerprint(value), lifetime_source="expires_in",
                     server_skew=None)

    monkeypatch.setattr(engine_mod, "mint", fresh)
    engine = Engine(_config(tmp_path))
    engine.setup()
    await engine.run_once()
    baseline = logs.known_secret_count()
    for _ in range(100):
        await engine.run_once()
    await engine.stop()
    assert n == 101
    assert logs.known_secret_count() <= baseline + 2 * (engine_mod.RETAINED_TOKENS + 1)
    st = engine.credentials["calm"]
    assert len(st.retired) == engine_mod.RETAINED_TOKENS
    # the current and the retained tokens are still redacted; an old one is not tracked any more
    assert logs.scrub_text(st.token.access_token.get_secret_value()) == logs.REDACTED
    assert logs.scrub_text(st.retired[-1]) == logs.REDACTED
