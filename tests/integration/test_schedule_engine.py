"""No credential falls off the schedule: the engine in-process against the real OAuth server.

oidc-provider issues 3 s tokens, so every credential rotates about every 1.5 s.
The stores are file stores wrapped to inject what a real store cannot be made to
do on demand: fail the first write of each token after a known delay, so that
the retry is due a few milliseconds after the run that failed.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncd import logs
from syncd.config import load_config
from syncd.engine import Engine
from syncd.payload import TokenPayload
from syncd.stores.base import TransientStoreError, WriteResult
from tests.conftest import OIDC_CLIENTS

NAMES = ("calm", "card", "extra1")
SECRETS = {c.client_id: c.client_secret for c in OIDC_CLIENTS}


def config(idp: Any, out: Path, names: tuple[str, ...]) -> Any:
    return load_config(
        data={
            "daemon": {"listen": "127.0.0.1:0"},
            "defaults": {
                "min_remaining": 1.0,
                "retry_min": 0.01,
                "retry_max": 0.05,
                "min_interval": 0.05,
                "token_lifetime": 3.0,
            },
            "stores": {"local": {"type": "file", "directory": str(out)}},
            "credentials": [
                {
                    "name": name,
                    "token_url": idp.token_url,
                    "client_id": name,
                    "client_secret": {"env": f"SCHED_{name.upper()}_SECRET"},
                    "scopes": ["cards:read"],
                    "targets": [{"store": "local", "key": f"{name}.json"}],
                }
                for name in names
            ],
        }
    )


class FirstWriteFails:
    """Fails the first write of every token (after ``delay`` s, longer than the backoff); then writes."""

    def __init__(self, inner: Any, delay: float = 0.03) -> None:
        self.inner, self.name, self.delay = inner, inner.name, delay
        self.tried: set[tuple[str, str]] = set()
        self.written: dict[str, list[str]] = {}

    async def write(self, key: str, payload: TokenPayload, *, target: Any = None) -> WriteResult:
        if (key, payload.fingerprint) not in self.tried:
            self.tried.add((key, payload.fingerprint))
            await asyncio.sleep(self.delay)
            raise TransientStoreError("injected: first write of this token fails", code="injected")
        result = await self.inner.write(key, payload, target=target)
        self.written.setdefault(key, []).append(payload.fingerprint)
        return result

    async def read(self, key: str, *, target: Any = None) -> TokenPayload | None:
        return await self.inner.read(key, target=target)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def plan(self, key: str, wpd: float, *, target: Any = None) -> list[Any]:
        return []


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, secret in SECRETS.items():
        monkeypatch.setenv(f"SCHED_{name.upper()}_SECRET", secret)


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Any:
    buf = io.StringIO()
    logs.configure("info", "json", stream=buf)

    def parsed(name: str) -> list[dict[str, Any]]:
        out = [json.loads(line) for line in buf.getvalue().splitlines() if line.startswith("{")]
        return [e for e in out if e.get("event") == name]

    yield parsed
    logs.configure("info", "json", stream=sys.__stderr__)


def wrapped_engine(cfg: Any, **kwargs: Any) -> tuple[Engine, FirstWriteFails]:
    engine = Engine(cfg, **kwargs)
    engine.setup()
    store = FirstWriteFails(engine.stores["local"])
    engine.stores["local"] = store  # type: ignore[assignment]
    for st in engine.credentials.values():
        for ts in st.targets:
            ts.store = store  # type: ignore[assignment]
    return engine, store


async def until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.05)


def rearmed_total(engine: Engine) -> float:
    text = engine.metrics.render().decode()
    return next(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "syncd_schedule_rearmed_total"
    )


async def test_a_retry_due_at_once_after_its_run_is_never_dropped(oidc_server, tmp_path, caplog):
    """Every first write fails, so every rotation ends with a retry due within milliseconds.

    The engine's clock runs 50 ms behind the scheduler's (a test device): a run "due now" by
    the engine is already overdue when the scheduler wakes, as on a busy loop, every time.
    The old scheduling (max_instances=1, next run armed by the run itself) dropped that
    retry, and the credential was never run again.
    """
    caplog.set_level(logging.WARNING, logger="apscheduler")
    engine, store = wrapped_engine(config(oidc_server, tmp_path, NAMES), clock=lambda: time.time() - 0.05)
    await engine.start()
    try:
        await until(
            lambda: all(len(set(store.written.get(f"{n}.json", []))) >= 3 for n in NAMES),
            30,
            "3 rotations written for every credential",
        )
    finally:
        await engine.stop()
    assert all(len(set(store.written[f"{n}.json"])) >= 3 for n in NAMES)
    assert {key for key, _ in store.tried} == {f"{n}.json" for n in NAMES}, "every rotation went through a retry"
    assert not [r for r in caplog.records if "maximum number of running instances" in r.getMessage()]
    # kept on schedule by construction, not rescued by the watchdog
    assert all(st.rearmed == 0 for st in engine.credentials.values())
    assert rearmed_total(engine) == 0


async def test_watchdog_rearms_a_credential_whose_job_was_removed(oidc_server, tmp_path, events):
    """A job removed behind the engine's back (the effect of any scheduling bug) is re-armed,
    counted in syncd_schedule_rearmed_total and /status, and logged; rotation goes on."""
    engine, store = wrapped_engine(config(oidc_server, tmp_path, ("calm",)))
    engine.watchdog_grace = 0.5  # the default 5 s would only make the test slower
    await engine.start()
    try:
        await until(lambda: store.written.get("calm.json"), 15, "first write")
        assert engine.scheduler is not None
        assert engine.jobs is not None
        # The credential's job lives on between runs, parked far ahead while a run is in flight:
        # wait until the run has moved it to its next refresh.
        await until(lambda: (engine.jobs.armed_at("calm") or 1e18) < time.time() + 3600, 5, "the next run armed")
        engine.scheduler.remove_job("cred:calm")
        before = len(set(store.written["calm.json"]))
        await until(lambda: events("schedule_rearmed"), 15, "schedule_rearmed")
        await until(lambda: len(set(store.written["calm.json"])) > before, 15, "a rotation after the re-arm")
    finally:
        await engine.stop()
    (event,) = events("schedule_rearmed")
    assert event["level"] == "warning" and event["credential"] == "calm" and event["job"] is None
    assert event["overdue"] > 0.5 and event["rearmed"] == 1
    assert rearmed_total(engine) == 1
    (status,) = engine.status()["credentials"]
    assert status["rearmed"] == 1 and status["last_rearmed"] is not None


async def test_a_loop_stall_longer_than_a_beat_skips_no_heartbeat(oidc_server, tmp_path, caplog, monkeypatch):
    """A loop held past the next beat (a long full collection at 100,000 credentials did it)
    right after the scheduler handed the heartbeat's run to the loop finds the next beat due
    while that run still counts as running (its task has not even started). With
    ``max_instances=1`` APScheduler skipped the beat with a "maximum number of running
    instances" warning each time; the stall itself is already in the lateness histogram.

    The stall is injected right after the scheduler's wake-up (our `LoopScheduler._wake_now`,
    wrapped): its pass has armed the timer for the next beat and queued the beat's task,
    and a collection or a slow callback later in the same loop turn holds the loop."""
    caplog.set_level(logging.WARNING, logger="apscheduler")
    engine, _ = wrapped_engine(config(oidc_server, tmp_path, ("calm",)))
    await engine.start()
    scheduler = engine.scheduler
    assert scheduler is not None
    real_wake = scheduler._wake_now
    stalls = [1.2, 1.2, 1.2]

    def wake_then_stall() -> None:
        real_wake()
        beats_running = scheduler._executors["default"]._instances.get("syncd:heartbeat", 0)
        if stalls and beats_running:
            time.sleep(stalls.pop())  # the loop's own thread: nothing else runs meanwhile

    monkeypatch.setattr(scheduler, "_wake_now", wake_then_stall)
    try:
        await until(lambda: not stalls, 15, "three stalls right after a beat was handed over")
        beat = engine.scheduler_heartbeat
        await until(lambda: engine.scheduler_heartbeat > beat, 5, "a beat after the stalls")
    finally:
        await engine.stop()
    assert not [r for r in caplog.records if "maximum number of running instances" in r.getMessage()]
