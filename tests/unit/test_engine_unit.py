"""Engine rules that need no server: the mint function is replaced in-process (documented per test).

The exchange is `syncd.engine.minting.mint`; a run's mint attempt is `engine.rotation.attempt_mint`.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from pydantic import SecretStr

from syncd import engine as engine_mod
from syncd import logs
from syncd.config import load_config
from syncd.engine import CredentialState, Engine, Rotation, TargetState, minting
from syncd.metrics import Metrics
from syncd.oauth import Token, TransientMintError
from syncd.payload import TokenPayload, fingerprint
from syncd.stores.base import create_store


def _config(tmp_path, **defaults):
    d = {"retry_min": 0.2, "retry_max": 0.4, "fatal_retry": 1.0, "min_remaining": 1.0, **defaults}
    return load_config(
        data={
            "daemon": {"listen": "127.0.0.1:0"},
            "defaults": d,
            "stores": {"local": {"type": "file", "directory": str(tmp_path)}},
            "credentials": [
                {
                    "name": "calm",
                    "token_url": "http://127.0.0.1:9/token",
                    "client_id": "x",
                    "client_secret": {"env": "ENGINE_UNIT_SECRET"},
                    "targets": [{"store": "local", "key": "calm.json"}],
                }
            ],
        }
    )


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv("ENGINE_UNIT_SECRET", "unit-secret-value")


async def until(predicate, what: str, timeout: float = 30.0) -> None:
    """Wait for a condition the engine reaches on its own schedule; the timeout only catches a hang."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


# Timer slack between the engine's schedule and the times the test records.
SLACK = 0.02


def record_attempts(engine, monkeypatch) -> list[float]:
    """When each mint attempt starts: the engine spaces attempts by their starts (min_interval, backoff)."""
    attempts: list[float] = []
    attempt_mint = engine.rotation.attempt_mint

    async def recorded(st):
        attempts.append(time.time())
        return await attempt_mint(st)

    monkeypatch.setattr(engine.rotation, "attempt_mint", recorded)
    return attempts


async def test_unexpected_mint_exception_backs_off(tmp_path, monkeypatch):
    """A bug-shaped exception from the mint path (injected) is retried with backoff, not in a hot loop."""

    async def broken(client, req, *, clock=time.time, deadline=None):
        raise RuntimeError("unexpected failure")

    monkeypatch.setattr(minting, "mint", broken)
    engine = Engine(_config(tmp_path, min_interval=0.1))
    calls = record_attempts(engine, monkeypatch)
    await engine.start()
    try:
        await until(lambda: len(calls) >= 4, "four mint attempts")
        st = engine.credentials["calm"]
        assert st.state == "retrying"
    finally:
        await engine.stop()
    # backoff between retry_min (0.2 s) and retry_max (0.4 s): never sooner than retry_min
    assert min(gaps(calls)) >= 0.2 - SLACK, gaps(calls)
    assert st.last_error["class"] == "RuntimeError" and st.last_error["kind"] == "transient"


async def test_missing_secret_is_fatal(tmp_path, monkeypatch):
    """An unset secret env var is a credential problem: fatal pace, message names the variable."""
    monkeypatch.delenv("ENGINE_UNIT_SECRET")
    engine = Engine(_config(tmp_path))
    attempts = record_attempts(engine, monkeypatch)
    await engine.start()
    try:
        await until(lambda: len(attempts) >= 2, "the second mint attempt")
    finally:
        await engine.stop()
    st = engine.credentials["calm"]
    assert st.state == "fatal" and "ENGINE_UNIT_SECRET" in st.last_error["message"]
    # fatal_retry 1 s with +-10 % jitter, not the 0.2 s retry_min of a transient error
    assert gaps(attempts)[0] >= 0.9 - SLACK, gaps(attempts)


async def test_token_never_written_after_expiry(tmp_path, monkeypatch):
    """A mint whose token has already expired by the time writes start (injected) is not written."""

    async def stale(client, req, *, clock=time.time, deadline=None):
        now = clock()
        return Token(
            access_token=SecretStr("stale-token-abcdef"),
            token_type="Bearer",
            scope=None,
            issued_at=now - 10,
            expires_at=now - 1,
            fingerprint=fingerprint("stale-token-abcdef"),
            lifetime_source="expires_in",
            server_skew=None,
        )

    monkeypatch.setattr(minting, "mint", stale)
    # min_interval well above how long a first mint takes on a loaded machine (client set-up),
    # so the spacing asserted below is the engine's floor and not the machine's speed.
    engine = Engine(_config(tmp_path, min_interval=1.0))
    calls = record_attempts(engine, monkeypatch)
    await engine.start()
    try:
        await until(lambda: len(calls) >= 3, "three mints")
        assert engine.not_ready()[0]["credential"] == "calm"
    finally:
        await engine.stop()
    assert not (tmp_path / "calm.json").exists()
    assert min(gaps(calls)) >= 1.0 - SLACK, f"mints closer than min_interval 1 s: {gaps(calls)}"


async def test_redactor_does_not_grow_with_rotations(tmp_path, monkeypatch):
    """Replaced tokens are forgotten by the log redactor after a bound (injected mint, 100 rotations)."""
    from syncd import logs

    n = 0

    async def fresh(client, req, *, clock=time.time, deadline=None):
        nonlocal n
        n += 1
        now = clock()
        value = f"rotating-token-{n:06d}-abcdef"
        return Token(
            access_token=SecretStr(value),
            token_type="Bearer",
            scope=None,
            issued_at=now,
            expires_at=now + 60,
            fingerprint=fingerprint(value),
            lifetime_source="expires_in",
            server_skew=None,
        )

    monkeypatch.setattr(minting, "mint", fresh)
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
    assert logs.scrub_text("rotating-token-000100-abcdef") == logs.REDACTED, "the last one replaced"
    assert logs.scrub_text("rotating-token-000097-abcdef") != logs.REDACTED, "beyond the last three"
    # kept as the redactor's hashes: no replaced token string is held for it
    assert all(isinstance(part, tuple) for handle in st.retired.handles() for part in handle)


class StubMinter:
    """Stands in for the IdP exchange (in-process): hands out the queued results in order."""

    def __init__(self, *results) -> None:
        self.results = list(results)

    async def mint(self, st):
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


def _payload(value: str, now: float, lifetime: float = 60.0) -> TokenPayload:
    return TokenPayload("calm", SecretStr(value), now, now + lifetime, now + lifetime / 2)


async def test_a_rotation_runs_without_the_daemon(tmp_path):
    """One credential's rotation on its own: a real file store, the mint stubbed (no scheduler, no Engine).

    A failed mint afterwards keeps the last good token held and in the target, and backs off.
    """
    config = _config(tmp_path)
    cfg, defaults = config.credentials[0], config.defaults
    store = create_store("local", config.stores["local"])
    st = CredentialState(
        cfg=cfg,
        policy=cfg.policy(defaults),
        lifetime_fallback=cfg.lifetime_fallback_for(defaults),
        targets=[TargetState(cfg=t, store=store) for t in cfg.targets],
    )
    now = time.time()
    first = _payload("rotation-token-first-abcdef", now)
    minter = StubMinter(first, TransientMintError("the IdP answered 503", credential="calm"))
    rotation = Rotation(
        minter=minter, settings=lambda: config, metrics=Metrics(), clock=time.time, rng=random.Random(1)
    )
    try:
        await rotation.run(st)
        assert st.state == "ok" and st.token == first and st.targets[0].holds(first)
        assert TokenPayload.from_json((tmp_path / "calm.json").read_text()).fingerprint == first.fingerprint

        await rotation.run(st, force_mint=True)
        assert st.state == "retrying" and st.token == first and st.mint_failures == 1
        assert st.last_error["class"] == "TransientMintError"
        assert st.mint_retry_at is not None and st.mint_retry_at > st.last_attempt
        assert TokenPayload.from_json((tmp_path / "calm.json").read_text()).fingerprint == first.fingerprint
    finally:
        await store.aclose()


def test_a_replaced_token_is_redacted_until_it_expires_then_forgotten(tmp_path):
    """Retained by expiry, not only by count: a token replaced early (a low refresh_at) stays known while
    valid; once expired it is forgotten at the next replacement, unless the IdP handed it out again."""
    now = [1_000_000.0]
    engine = Engine(_config(tmp_path), clock=lambda: now[0])
    engine.setup()
    st = engine.credentials["calm"]

    def token(n: int, life: float) -> TokenPayload:
        value = f"retained-token-{n:04d}-abcdefgh"
        logs.register_secret(value)  # as a mint does before the token is held
        return TokenPayload("calm", SecretStr(value), now[0], now[0] + life, now[0] + 1, fingerprint=fingerprint(value))

    def known(n: int) -> bool:
        return logs.scrub_text(f"retained-token-{n:04d}-abcdefgh") == logs.REDACTED

    def retired() -> list[int]:
        handles = st.retired.handles()
        return [n for n in range(1, 7) if logs.secret_handle(f"retained-token-{n:04d}-abcdefgh") in handles]

    for n, life in ((1, 100), (2, 100), (3, 300)):
        engine.rotation.set_token(st, token(n, life))
    assert retired() == [1, 2] and known(1) and known(2)
    now[0] += 101  # 1 and 2 have expired, 3 has not
    engine.rotation.set_token(st, token(4, 100))
    assert retired() == [3]
    assert not known(1) and not known(2), "expired: forgotten"
    assert known(3), "valid until the next replacement finds it expired"
    engine.rotation.set_token(st, token(5, 100))
    engine.rotation.set_token(st, token(4, 300))  # the IdP hands 4 out again, with a later expiry
    now[0] += 101  # the first 4 and 5 have expired; 3 and the second 4 have not
    engine.rotation.set_token(st, token(6, 100))
    assert known(4), "still valid as the token handed out again"
    assert not known(5) and known(6)
    assert not known(3), f"valid, but beyond the last {engine_mod.RETAINED_TOKENS} replaced"


async def test_a_sweep_whose_reads_fail_whole_still_plans_the_next_read_back(tmp_path, monkeypatch):
    """The read-back sweep takes many credentials at once: if its reading raises (a bug; the reads
    replaced in-process here), every credential it took must keep a planned read-back, and none
    may stay marked as being read (which would skip it for good)."""
    from syncd.schedule import LoopScheduler

    engine = Engine(_config(tmp_path))
    engine.setup()
    st = engine.credentials["calm"]
    now = time.time()
    st.token = _payload("calm-token-0123456789abcdef", now, lifetime=600.0)
    ts = st.targets[0]
    ts.stored_fingerprint, ts.stored_expires_at, ts.verify_at = st.token.fingerprint, st.token.expires_at, now - 1
    scheduler = LoopScheduler()
    scheduler.start(paused=True)
    engine.readbacks.start(scheduler)

    async def broken(states):
        raise RuntimeError("reading broke")

    monkeypatch.setattr(engine.rotation, "verify_many", broken)
    try:
        with pytest.raises(RuntimeError):
            await engine.readbacks.fire(["calm"])
        assert not st.verifying
        assert engine.readbacks.sweep is not None and engine.readbacks.sweep.planned("calm") is not None
    finally:
        scheduler.shutdown(wait=False)
