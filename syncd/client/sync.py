"""TokenReader: the blocking reader. A lock, one store read at a time, and the core decides the rest."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Self

from syncd.client.core import Want
from syncd.client.shared import ReaderBase, attempt
from syncd.payload import TokenPayload
from syncd.stores.reading import Fetched


class TokenReader(ReaderBase):
    """Read a syncd token from a store, cached until the payload says to read again.

    ``source`` is a URL: ``file:///var/run/syncd/calm.json``, ``vault://secret/vgs/calm``
    (``?kv=1`` for KV v1; address from ``vault_addr`` or ``VAULT_ADDR``, token from
    ``vault_token``, ``VAULT_TOKEN`` or ``~/.vault-token``, namespace from
    ``VAULT_NAMESPACE``), ``aws-sm://vgs/calm?region=eu-west-1`` (follows a slot
    index), ``aws-ssm:///vgs/calm?region=eu-west-1``. A bad URL raises ValueError
    at construction; nothing is read until the first :meth:`get`.

    Freshness: the store is read again after ``refresh_after`` plus a short grace
    (syncd starts minting at ``refresh_after``, the new token lands a moment
    later); the default grace is 20 % of the time from ``refresh_after`` to expiry,
    at most 10 s. A payload without ``refresh_after`` is read again when half of
    its remaining lifetime is gone. Reads that cannot bring anything new (same
    token again, store errors, an expired token) are at least ``min_reread``
    seconds apart. A token is never returned within ``expiry_margin`` seconds of
    its expiry.

    Thread-safe: one store read at a time; while it runs, other threads get the
    cached token if it is still valid, or wait for the read if it is not.
    """

    _lock: threading.Lock

    @staticmethod
    def _new_lock() -> threading.Lock:
        return threading.Lock()

    def get(self) -> str:
        """The access token: valid now, read from the store only when due."""
        return self.token_info().access_token.get_secret_value()

    def token_info(self) -> TokenPayload:
        """The whole payload (its ``repr`` hides the token): expiry, type, scope, fingerprint."""
        fresh, valid = self._cached()
        if fresh is not None:
            return fresh
        if valid is None:
            self._lock.acquire()  # nothing valid to hand out: wait for the read in progress, or read
        elif not self._lock.acquire(blocking=False):
            return valid  # another thread is reading; the cached token is still good meanwhile
        try:
            return self._read_locked(Want())
        finally:
            self._lock.release()

    def refresh(self, rejected: str | None = None) -> TokenPayload:
        """Read the store now, bypassing the cache; return the payload then cached.

        For a 401: pass the token the server rejected, and the read is skipped if
        another thread already replaced it. Concurrent calls share one read.
        """
        want = Want(force=True, rejected=rejected, generation=self._cache.state.generation)
        with self._lock:
            return self._read_locked(want)

    def _read_locked(self, want: Want) -> TokenPayload:
        cache = self._cache
        payload = cache.want(want)
        return payload if payload is not None else cache.answer(attempt(self._fetch, cache.clock()))

    def _fetch(self, now: float) -> Fetched:
        """One store read (the place to instrument in tests)."""
        return self._cache.source.fetch(now)

    def close(self) -> None:
        """Release the store client (HTTP connections). The reader must not be used afterwards."""
        self._cache.source.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
