"""What a shutdown leaves behind: targets a cut-off run did not write, worker threads that do not return.

A store call blocked in a worker thread (an SDK waiting for a server that never
answers) cannot be cancelled, and Python joins every ``ThreadPoolExecutor``
thread at interpreter exit, so one such call would hold a SIGTERM for as long as
the SDK's own timeout. The daemon names its worker threads, shuts their pools
down without waiting, gives idle workers a moment to end, and exits without
joining the ones that are still busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Protocol, TypeVar

__all__ = ["THREAD_EXIT_GRACE", "THREAD_PREFIX", "busy_threads", "exit_now", "unwritten_targets"]

#: Prefix of the worker threads syncd owns (the daemon's default executor, ``ThreadedStore`` pools).
THREAD_PREFIX = "syncd-"
THREAD_EXIT_GRACE = 0.5  # idle workers of a shut-down pool end within milliseconds


class _Token(Protocol):
    @property
    def fingerprint(self) -> str: ...

    def expired(self, now: float) -> bool: ...


class _Target(Protocol):
    @property
    def stored_fingerprint(self) -> str | None: ...

    @property
    def retry_at(self) -> float | None: ...


T = TypeVar("T", bound=_Target)


def unwritten_targets(token: _Token | None, targets: Sequence[T], now: float) -> list[T]:
    """The targets a run cut off at shutdown was writing or had still to write.

    A run writes the held token to every target that does not hold it and whose backoff
    has passed; a target that took it holds its fingerprint, one that failed waits out a
    backoff. A run cut off while minting leaves every target with the token it had.
    """
    if token is None or token.expired(now):
        return []
    return [
        ts
        for ts in targets
        if ts.stored_fingerprint != token.fingerprint and (ts.retry_at is None or ts.retry_at <= now)
    ]


async def busy_threads(grace: float, before: set[threading.Thread]) -> list[str]:
    """Our worker threads (started since ``before``) still alive ``grace`` s after their pools shut down."""
    deadline = time.monotonic() + grace
    while True:
        busy = sorted(
            t.name
            for t in threading.enumerate()
            if t.name.startswith(THREAD_PREFIX) and t not in before and t.is_alive()
        )
        if not busy or time.monotonic() >= deadline:
            return busy
        await asyncio.sleep(0.02)


def exit_now(code: int) -> None:
    """Exit without joining worker threads (a thread blocked in a store call would hold the exit)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
