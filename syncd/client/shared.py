"""What the sync and async readers share: the cache they feed, and everything but the lock and the read.

:class:`Cache` holds a source, the :class:`~syncd.client.core.Rules`, the clock
and the current :class:`~syncd.client.core.State`; it turns core decisions into
return values, log lines and exceptions. A :class:`TokenReader` and the
:class:`AsyncTokenReader` made from it for httpx's async flow share one Cache.
:class:`ReaderBase` is the part of both readers that does no I/O.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Self

from syncd.client.core import Decision, Event, Fail, Note, Read, ReadDone, ReadFailed, Rules, Serve, State, Want
from syncd.client.sources import Options, open_source
from syncd.payload import TokenPayload
from syncd.stores.reading import Fetched, Source, TokenError, TokenStoreError

log = logging.getLogger("syncd.client")

#: Default pause between two reads that cannot bring anything new (same token
#: after refresh_after, a failed read, an expired token in the store).
DEFAULT_MIN_REREAD: Final = 1.0
#: Default timeout of one store call (connect and read), seconds.
DEFAULT_TIMEOUT: Final = 5.0


def emit(note: Note | None) -> None:
    """Log what the core asked to log."""
    if note is not None:
        log.log(note.level, note.message, *note.args)


class Cache:
    """One source, its rules and state. ``state`` is replaced, never mutated, under the reader's lock.

    The readers' fast path reads ``state`` without the lock: it always sees a
    consistent (payload, next_read) pair.
    """

    def __init__(self, source: Source, rules: Rules, clock: Callable[[], float]) -> None:
        self.source = source
        self.rules = rules
        self.clock = clock
        self.state = State()

    @classmethod
    def over(
        cls,
        source: Source,
        *,
        min_reread: float = DEFAULT_MIN_REREAD,
        refresh_grace: float | None = None,
        expiry_margin: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> Cache:
        """A cache over ``source`` with the reader's freshness options (checked here)."""
        return cls(source, Rules(source.description, min_reread, refresh_grace, expiry_margin), clock)

    def step(self, event: Event) -> Decision:
        """Feed ``event`` to the core at the current time; keep the new state. Call under the lock."""
        self.state, decision = self.rules.step(self.state, event, self.clock())
        return decision

    def want(self, want: Want) -> TokenPayload | None:
        """The payload to hand out without reading, or None if the caller must read now."""
        decision = self.step(want)
        return None if isinstance(decision, Read) else settle(decision)

    def answer(self, outcome: Fetched | Exception) -> TokenPayload:
        """The payload to hand out after a read that returned or raised ``outcome``."""
        if isinstance(outcome, Fetched):
            return settle(self.step(ReadDone(outcome)))
        if not isinstance(outcome, TokenError):
            outcome = _unexpected(outcome, self.source.description)
        return settle(self.step(ReadFailed(outcome)))


def settle(decision: Decision) -> TokenPayload:
    """Carry out a Serve or Fail decision: log its note and return the payload, or raise."""
    if isinstance(decision, Fail):
        raise decision.error
    assert isinstance(decision, Serve)
    emit(decision.note)
    return decision.payload


def attempt(fetch: Callable[[float], Fetched], now: float) -> Fetched | Exception:
    """``fetch(now)``, or what it raised (for :meth:`Cache.answer`)."""
    try:
        return fetch(now)
    except Exception as exc:
        return exc


async def attempt_async(fetch: Callable[[float], Awaitable[Fetched]], now: float) -> Fetched | Exception:
    """The awaited ``fetch(now)``, or what it raised."""
    try:
        return await fetch(now)
    except Exception as exc:
        return exc


def _unexpected(exc: Exception, source: str) -> TokenStoreError:
    log.error("%s: unexpected %s while reading the store", source, exc.__class__.__name__, exc_info=exc)
    return TokenStoreError(f"{source}: unexpected {exc.__class__.__name__} while reading the store", source)


class ReaderBase:
    """Construction, the lock-free fast path and the read flow; subclasses add the lock and the fetch."""

    _cache: Cache
    _lock: Any

    def __init__(
        self,
        source: str | os.PathLike[str],
        *,
        min_reread: float = DEFAULT_MIN_REREAD,
        refresh_grace: float | None = None,
        expiry_margin: float = 0.0,
        timeout: float = DEFAULT_TIMEOUT,
        vault_addr: str | None = None,
        vault_token: str | None = None,
        vault_namespace: str | None = None,
        aws_session: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        opts = Options(timeout, vault_addr, vault_token, vault_namespace, aws_session)
        self._cache = Cache.over(
            open_source(source, opts),
            min_reread=min_reread,
            refresh_grace=refresh_grace,
            expiry_margin=expiry_margin,
            clock=clock,
        )
        self._lock = self._new_lock()

    @staticmethod
    def _new_lock() -> Any:
        raise NotImplementedError

    @classmethod
    def _sharing(cls, cache: Cache) -> Self:
        """A reader over an existing cache (httpx's other flow; tests give it their own source)."""
        reader = cls.__new__(cls)
        reader._cache = cache
        reader._lock = cls._new_lock()
        return reader

    def _cached(self) -> tuple[TokenPayload | None, TokenPayload | None]:
        """Without the lock: (the payload to return now if fresh, the payload still valid if any)."""
        cache = self._cache
        now, state = cache.clock(), cache.state
        return cache.rules.fresh(state, now), cache.rules.usable(state, now)

    @property
    def source(self) -> str:
        """The source, as shown in messages (never contains a credential)."""
        return self._cache.source.description

    @property
    def reads(self) -> int:
        """Store reads started so far (for metrics and tests: one per rotation is the goal)."""
        return self._cache.state.reads

    @property
    def read_errors(self) -> int:
        """Store reads that failed."""
        return self._cache.state.read_errors

    def __repr__(self) -> str:
        entry = self._cache.state.entry
        state = f" token={entry.payload.fingerprint}" if entry is not None else ""
        return f"{type(self).__name__}({self.source!r}{state})"
