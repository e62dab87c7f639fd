"""The scheduler syncd runs: APScheduler's asyncio scheduler with a cheap wake-up from the loop's own thread."""

from __future__ import annotations

import asyncio

from apscheduler.schedulers.asyncio import AsyncIOScheduler

__all__ = ["LoopScheduler"]


class LoopScheduler(AsyncIOScheduler):  # type: ignore[misc]  # APScheduler 3 is untyped
    """An ``AsyncIOScheduler`` whose wake-ups from the loop's own thread are one coalesced ``call_soon``.

    APScheduler's wake-up is ``call_soon_threadsafe`` whatever the caller's thread (a write to
    the loop's self-pipe and a read on the next turn), followed by a pass over the due jobs;
    each re-armed credential paid for both. Wake-ups from another thread keep that path.
    """

    _wakeup_pending = False

    def wakeup(self) -> None:
        loop = self._eventloop
        if loop is None:
            return
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if not on_loop:
            loop.call_soon_threadsafe(self._wake_now)
        elif not self._wakeup_pending:
            self._wakeup_pending = True
            loop.call_soon(self._wake_now)

    def _wake_now(self) -> None:
        self._wakeup_pending = False
        self._stop_timer()
        self._start_timer(self._process_jobs())

    def _start_timer(self, wait_seconds: float | None) -> None:
        self._stop_timer()
        if wait_seconds is not None and self._eventloop is not None:
            self._timeout = self._eventloop.call_later(wait_seconds, self._wake_now)
