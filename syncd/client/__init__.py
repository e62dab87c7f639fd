"""Consumer side: read the token syncd keeps fresh, and send it correctly.

A consumer has three things to get right: where the token is, when to read it
again, and what to do on a 401. This package does all three:

- :class:`TokenReader` (and its asyncio twin :class:`AsyncTokenReader`) reads a
  syncd payload from a source URL (``file:///...``, ``vault://mount/path``,
  ``aws-sm://secret-id``, ``aws-ssm:///parameter``), caches it, and reads the
  store again only when the payload says so (``refresh_after``), so a fleet of
  consumers costs the store one read per rotation each, not one per request.
  It never hands out an expired token.
- :class:`SyncdAuth` (httpx, sync and async) and :class:`SyncdRequestsAuth`
  (requests) put ``Authorization: <token_type> <token>`` on every request and,
  on a 401, force one re-read and resend only if the store had a different token.

Library code: it logs with stdlib :mod:`logging` under ``syncd.client`` and
configures nothing. boto3 and hvac are imported only by the sources that need
them, so a consumer reading a file never pays for them. No message, log line or
``repr`` contains a token; tokens are identified by their fingerprint.

Inside: ``core`` decides (no I/O), ``sync`` and ``aio`` are the two readers
around it, ``auth`` the HTTP adapters, ``sources`` the source URLs.
"""

from __future__ import annotations

from syncd.client.aio import AsyncTokenReader
from syncd.client.auth import SyncdAuth, SyncdRequestsAuth
from syncd.client.core import authorization_header
from syncd.client.sync import TokenReader
from syncd.payload import TokenPayload
from syncd.stores.reading import (
    TokenError,
    TokenExpiredError,
    TokenFormatError,
    TokenNotFoundError,
    TokenStoreError,
)

__all__ = [
    "AsyncTokenReader",
    "SyncdAuth",
    "SyncdRequestsAuth",
    "TokenError",
    "TokenExpiredError",
    "TokenFormatError",
    "TokenNotFoundError",
    "TokenPayload",
    "TokenReader",
    "TokenStoreError",
    "authorization_header",
]
