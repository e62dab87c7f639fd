"""The end of a drain: which tasks are runs, what runs cut at ``drain_timeout`` leave unwritten, closing a store.

``Engine.stop`` pauses the scheduler, waits for the runs in flight (bounded by
``drain_timeout``) and then closes stores and clients; these are its steps that
need no engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

import httpx

from syncd import logs, shutdown
from syncd.engine.state import CredentialState
from syncd.stores.base import Store

log = logs.get_logger("syncd.engine")

__all__ = ["CLOSE_TIMEOUT", "abandon", "close_all", "close_store", "is_job_task"]

CLOSE_TIMEOUT = 0.5  # bound on closing the stores (together), then the HTTP clients, at shutdown


def is_job_task(task: asyncio.Task[Any]) -> bool:
    """Whether ``task`` is a credential's run (an APScheduler job, or a run started directly)."""
    coro = task.get_coro()
    qualname = getattr(coro, "__qualname__", "")
    return "run_coroutine_job" in qualname or "Engine.run_credential" in qualname


async def abandon(
    pending: set[asyncio.Task[Any]], credentials: Iterable[CredentialState], now: float, bound: float
) -> None:
    """Log what the runs cut at ``drain_timeout`` leave unwritten, cancel them and wait (bounded)."""
    cut = [st for st in credentials if st.running]
    log.warning("drain_timeout", unfinished=len(pending), credentials=sorted(st.name for st in cut), bound=bound)
    for st in cut:
        for ts in shutdown.unwritten_targets(st.token, st.targets, now):
            log.warning(
                "write_abandoned",
                credential=st.name,
                target=ts.label,
                store=ts.store.name,
                fingerprint=st.token.fingerprint if st.token else None,
                reason=f"not finished within drain_timeout ({bound:g}s); the target keeps what it held",
            )
    # The cancelled jobs' tracebacks would only repeat this event.
    quiet = logging.getLogger("apscheduler.executors")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=1.0)
    finally:
        quiet.setLevel(level)


async def close_all(stores: Iterable[Store], clients: Iterable[httpx.AsyncClient]) -> None:
    """Close the stores, then the HTTP clients, each group within `CLOSE_TIMEOUT`.

    Bounded: a store whose call hangs (a stopped server, a stuck SDK thread) must not hold
    the exit; what it leaves behind is the daemon's to abandon (``syncd.daemon``).
    """
    await asyncio.gather(*(close_store(store, CLOSE_TIMEOUT) for store in stores))
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*(c.aclose() for c in clients)), CLOSE_TIMEOUT)


async def close_store(store: Store, within: float) -> None:
    """Close ``store`` within ``within`` seconds; a store that fails or hangs is logged and left behind."""
    try:
        await asyncio.wait_for(store.aclose(), within)
    except TimeoutError:
        log.warning("store_close", store=store.name, error=f"not closed within {within:g}s; abandoned")
    except Exception as exc:
        log.warning("store_close", store=store.name, **logs.error_fields(exc))
