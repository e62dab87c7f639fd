"""AsyncTokenReader: the asyncio reader. An asyncio.Lock, the store read in a worker thread, the core decides."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

from syncd.client.core import Want
from syncd.client.shared import ReaderBase, attempt_async
from syncd.payload import TokenPayload
from syncd.stores.reading import Fetched


class AsyncTokenReader(ReaderBase):
    """The asyncio twin of :class:`TokenReader`: same sources, options and rules.

    One store read at a time (an :class:`asyncio.Lock`); blocking SDK calls run
    in a worker thread so the event loop never waits on the store. Use one
    instance per event loop.
    """

    _lock: asyncio.Lock

    @staticmethod
    def _new_lock() -> asyncio.Lock:
        return asyncio.Lock()

    async def get(self) -> str:
        """The access token: valid now, read from the store only when due."""
        return (await self.token_info()).access_token.get_secret_value()

    async def token_info(self) -> TokenPayload:
        """The whole payload (its ``repr`` hides the token)."""
        fresh, valid = self._cached()
        if fresh is not None:
            return fresh
        if valid is not None and self._lock.locked():
            return valid  # a read is in progress; the cached token is still good
        async with self._lock:
            return await self._read_locked(Want())

    async def refresh(self, rejected: str | None = None) -> TokenPayload:
        """Read the store now, bypassing the cache (see :meth:`TokenReader.refresh`)."""
        want = Want(force=True, rejected=rejected, generation=self._cache.state.generation)
        async with self._lock:
            return await self._read_locked(want)

    async def _read_locked(self, want: Want) -> TokenPayload:
        cache = self._cache
        payload = cache.want(want)
        return payload if payload is not None else cache.answer(await attempt_async(self._fetch, cache.clock()))

    async def _fetch(self, now: float) -> Fetched:
        """One store read, in a worker thread (the place to instrument in tests)."""
        return await asyncio.to_thread(self._cache.source.fetch, now)

    async def aclose(self) -> None:
        """Release the store client. The reader must not be used afterwards."""
        await asyncio.to_thread(self._cache.source.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
