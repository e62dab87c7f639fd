"""``run_daemon`` in this process, driven by real signals: SIGTERM drain with a slow store, SIGHUP rejections.

In-process so the store can be a slow one (a file store that sleeps before each
write, registered as a plugin store type); the signals are real, sent to this
process and handled by the daemon's loop handlers. The subprocess versions are
in tests/integration/test_lifecycle_daemon.py.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from syncd import heap, logs
from syncd.config import FileStoreConfig, load_config
from syncd.daemon import run_daemon
from syncd.payload import TokenPayload, fingerprint
from syncd.stores import base as stores_base
from syncd.stores.file import FileStore
from tests.peers.fake_idp import ok

SECRET = "lifecycle-secret-0123456789"


class SlowFileStore:
    """``type = "slow-file"``: a file store whose writes first sleep ``delay`` seconds."""

    started: asyncio.Event | None = None

    def __init__(self, name: str, config: Any) -> None:
        extra = dict(config.model_extra or {})
        self.name = name
        self.delay = float(extra.pop("delay"))
        self.inner = FileStore(name, FileStoreConfig(type="file", **extra))

    @classmethod
    def from_config(cls, name: str, config: Any) -> SlowFileStore:
        return cls(name, config)

    async def write(self, key, payload, *, target=None):
        if SlowFileStore.started is not None:
            SlowFileStore.started.set()
        await asyncio.sleep(self.delay)
        return await self.inner.write(key, payload, target=target)

    async def read(self, key, *, target=None):
        return await self.inner.read(key, target=target)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def plan(self, key, wpd, *, target=None):
        return []


@pytest.fixture(autouse=True)
def _plugin_and_secret(monkeypatch):
    real = stores_base.store_class
    monkeypatch.setattr(stores_base, "store_class", lambda t: SlowFileStore if t == "slow-file" else real(t))
    monkeypatch.setenv("LIFECYCLE_SECRET", SECRET)


@pytest.fixture
def events(monkeypatch) -> Any:
    """The daemon's JSON events, kept in a buffer even when a reload re-configures logging."""
    buf = io.StringIO()
    real_configure = logs.configure
    real_configure("info", "json", stream=buf)
    monkeypatch.setattr(
        logs, "configure", lambda level="info", fmt="json", stream=None: real_configure(level, fmt, buf)
    )

    def parsed(name: str | None = None) -> list[dict[str, Any]]:
        out = [json.loads(line) for line in buf.getvalue().splitlines() if line.startswith("{")]
        return [e for e in out if name is None or e.get("event") == name]

    yield parsed
    real_configure("info", "json", stream=sys.__stderr__)


def config_text(token_url: str, out: Path, *, delay: float, drain: str, extra: str = "") -> str:
    return f"""
[daemon]
listen = "127.0.0.1:0"
drain_timeout = "{drain}"

[defaults]
token_lifetime = "60s"

[stores.slow]
type = "slow-file"
directory = "{out}"
delay = {delay}
{extra}
[[credentials]]
name = "calm"
token_url = "{token_url}"
client_id = "calm"
client_secret = {{ env = "LIFECYCLE_SECRET" }}
targets = [{{ store = "slow", key = "calm.json" }}]
"""


async def start(path: Path) -> asyncio.Task[int]:
    SlowFileStore.started = asyncio.Event()
    return asyncio.get_running_loop().create_task(run_daemon(load_config(path), path))


async def write_in_flight(task: asyncio.Task[int]) -> None:
    """Wait until the slow store is inside a write (or fail with the daemon's own error)."""
    assert SlowFileStore.started is not None
    waiter = asyncio.ensure_future(SlowFileStore.started.wait())
    done, _ = await asyncio.wait({waiter, task}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
        raise AssertionError("the daemon returned before writing")
    assert waiter in done, "no write started within 10 s"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


async def test_sigterm_lets_an_in_flight_write_finish(fake_idp, tmp_path, events):
    fake_idp.default = ok(ttl=60)
    cfg = write(tmp_path / "syncd.toml", config_text(fake_idp.token_url, tmp_path, delay=1.5, drain="10s"))
    task = await start(cfg)
    await write_in_flight(task)
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(task, 10) == 0
    stored = TokenPayload.from_json((tmp_path / "calm.json").read_text())
    assert stored.fingerprint == fingerprint(fake_idp.tokens[0]), "the in-flight token was written"
    names = [e["event"] for e in events()]
    assert names.index("signal") < names.index("write") < names.index("stopped")
    assert events("write")[0]["outcome"] == "ok" and not events("drain_timeout")


async def test_sigterm_cuts_off_a_write_longer_than_drain_timeout(fake_idp, tmp_path, events):
    fake_idp.default = ok(ttl=60)
    cfg = write(tmp_path / "syncd.toml", config_text(fake_idp.token_url, tmp_path, delay=60, drain="1s"))
    task = await start(cfg)
    await write_in_flight(task)
    sent = time.monotonic()
    os.kill(os.getpid(), signal.SIGTERM)
    # Returning at all before the 60 s write ends shows the run was cut off, not awaited.
    assert await asyncio.wait_for(task, 10) == 0
    took = time.monotonic() - sent
    assert took >= 1.0, f"returned after {took:.2f}s: the daemon did not wait drain_timeout (1s)"
    (cut,) = events("drain_timeout")
    assert cut["credentials"] == ["calm"] and cut["unfinished"] == 1 and cut["bound"] == 1.0
    assert not (tmp_path / "calm.json").exists()
    assert events("stopped")


async def test_sighup_rejects_a_config_the_plan_refuses_and_keeps_running(fake_idp, tmp_path, events):
    """A store that cannot be created passes validation (plugin types are found at run time)
    but would refuse a start: SIGHUP rejects it, names it, and nothing changes."""
    fake_idp.default = ok(ttl=60)
    text = config_text(fake_idp.token_url, tmp_path, delay=0, drain="2s")
    cfg = write(tmp_path / "syncd.toml", text)
    task = await start(cfg)
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "calm.json").exists():
            assert time.monotonic() < deadline, "first write"
            await asyncio.sleep(0.05)
        broken = text + '\n[stores.elsewhere]\ntype = "no-such-store-type"\n'
        broken = broken.replace(
            'targets = [{ store = "slow", key = "calm.json" }]',
            'targets = [{ store = "slow", key = "calm.json" }, { store = "elsewhere", key = "x" }]',
        )
        write(cfg, broken)
        assert not task.done(), "the daemon must be running to handle SIGHUP"
        os.kill(os.getpid(), signal.SIGHUP)
        while not events("reload_rejected"):
            assert time.monotonic() < deadline + 5, "reload_rejected event"
            await asyncio.sleep(0.05)
        (rejected,) = events("reload_rejected")
        assert rejected["level"] == "error" and rejected["action"] == "keeping the running configuration"
        assert any("stores.elsewhere" in p and "no-such-store-type" in p for p in rejected["problems"])
        assert not events("reloaded")
        # a valid file with a new listen address: applied, with a warning that listen needs a restart
        write(cfg, text.replace('listen = "127.0.0.1:0"', 'listen = "127.0.0.1:1"'))
        assert not task.done(), "the daemon must be running to handle SIGHUP"
        os.kill(os.getpid(), signal.SIGHUP)
        while not events("reload_partial"):
            assert time.monotonic() < deadline + 10, "reload_partial event"
            await asyncio.sleep(0.05)
        assert events("reloaded") and events("reload_partial")[0]["key"] == "daemon.listen"
        # what start-up and the reload built is out of later full collections (syncd.daemon says why)
        assert gc.get_freeze_count() > 0
    finally:
        if not task.done():  # its handler is installed only while it runs; else SIGTERM would hit pytest
            os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 10) == 0
    assert gc.get_freeze_count() == 0, "a process that ran the daemon in-process collects as before"


async def test_the_running_daemon_reclaims_the_frozen_heap_periodically(fake_idp, tmp_path, events, monkeypatch):
    """Every 6 hours in production (`heap.RECLAIM_INTERVAL`), every 0.2 s here: each walk is one
    ``heap_reclaimed`` event, and the daemon takes its freezing callback away when it stops."""
    monkeypatch.setattr(heap, "RECLAIM_INTERVAL", 0.2)
    fake_idp.default = ok(ttl=60)
    cfg = write(tmp_path / "syncd.toml", config_text(fake_idp.token_url, tmp_path, delay=0, drain="2s"))
    task = await start(cfg)
    try:
        deadline = time.monotonic() + 10
        while len(events("heap_reclaimed")) < 2:
            assert not task.done() and time.monotonic() < deadline, "two heap_reclaimed events"
            await asyncio.sleep(0.05)
        first = events("heap_reclaimed")[0]
        assert first["level"] == "info" and first["collected"] >= 0 and first["seconds"] >= 0
        assert any(getattr(cb, "__module__", None) == "syncd.heap" for cb in gc.callbacks)
    finally:
        if not task.done():
            os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 10) == 0
    assert not any(getattr(cb, "__module__", None) == "syncd.heap" for cb in gc.callbacks)
    assert gc.get_freeze_count() == 0
