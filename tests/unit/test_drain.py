"""syncd.engine.drain.close_all: stores, then HTTP clients, each group closed within CLOSE_TIMEOUT.

The stores here are in-process fakes: a real store cannot be made to hang in ``aclose`` or
fail it on cue, and that is the case the bound is for."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import httpx
import pytest

from syncd import logs
from syncd.engine import drain


class _Store:
    def __init__(self, name: str, close: str) -> None:
        self.name, self.close, self.closed = name, close, False

    async def aclose(self) -> None:
        if self.close == "hang":
            await asyncio.Event().wait()
        if self.close == "fail":
            raise OSError("injected: close failed")
        self.closed = True


@pytest.fixture
def events() -> Any:
    buf = io.StringIO()
    logs.configure("info", "json", stream=buf)
    yield lambda: [json.loads(line) for line in buf.getvalue().splitlines() if line.startswith("{")]
    logs.configure("info", "json")


async def test_a_hanging_or_failing_store_is_logged_and_left_behind_and_the_rest_close(events, monkeypatch):
    monkeypatch.setattr(drain, "CLOSE_TIMEOUT", 0.2)
    stores = [_Store("good", "ok"), _Store("stuck", "hang"), _Store("broken", "fail")]
    client = httpx.AsyncClient()
    await asyncio.wait_for(drain.close_all(stores, [client]), 10)  # a hanging store must not hold it
    assert stores[0].closed and client.is_closed
    closes = {e["store"]: e for e in events() if e["event"] == "store_close"}
    assert set(closes) == {"stuck", "broken"}
    assert closes["stuck"]["level"] == "warning" and "abandoned" in closes["stuck"]["error"]
    assert closes["broken"]["error_class"] == "OSError"
