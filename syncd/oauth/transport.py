"""An httpx transport over aiohttp's client: httpx's API for ``oauth.mint``, aiohttp's cost per request.

A token request through httpx's own transport (httpcore's pool, anyio cancel
scopes) costs about three times the CPU of the same POST with aiohttp's client,
and at steady state that was the largest single cost of a rotation (see
docs/benchmarks.md). This transport keeps every rule that lives in httpx and in
``oauth`` (no redirects, the body cap, the deadline, redaction, content
decoding, proxies from the environment, which httpx mounts on its own
transports) and only replaces the wire: one pooled ``aiohttp.ClientSession``
per client.

The contract it keeps with httpx: httpx's per-request timeouts map onto
aiohttp's (``connect`` and ``pool`` bound getting a connection, ``read`` each
socket read), and aiohttp's errors become the httpx exceptions httpcore would
raise for the same failure, so ``oauth`` classifies them unchanged. Bodies are
passed through undecoded (httpx decodes them, and caps them while reading).
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator, Mapping

import aiohttp
import httpx

__all__ = ["AiohttpTransport"]

#: How long an idle connection is kept, as httpx's default pool does.
KEEPALIVE_EXPIRY = 5.0
_CHUNK = 16 * 1024


class AiohttpTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=AiohttpTransport(...))``: aiohttp carries httpx's requests."""

    def __init__(self, *, ssl_context: ssl.SSLContext, max_connections: int) -> None:
        self._ssl = ssl_context
        self._max_connections = max_connections
        # Created on first use: an aiohttp session belongs to the running event loop.
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The pooled session (``oauth.direct`` sends through it too)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                ssl=self._ssl,
                keepalive_timeout=KEEPALIVE_EXPIRY,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx decodes, so the body cap sees the bytes that arrive
                trust_env=False,  # httpx routes proxied origins to its own proxy transports
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{url.scheme}://'.")
        if not url.host:
            raise httpx.UnsupportedProtocol("Request URL is missing a host.")
        timeout = aiohttp_timeout(request.extensions.get("timeout", {}))
        body = await request.aread()
        session = self.session()
        try:
            response = await session.request(
                request.method,
                str(url),
                data=body or None,
                headers=list(request.headers.multi_items()),
                allow_redirects=False,
                timeout=timeout,
                compress=None,
                skip_auto_headers=("Content-Type",),
            )
        except Exception as exc:
            raise _as_httpx(exc, request) from None
        return httpx.Response(
            response.status,
            # Bytes, as httpcore hands them over: httpx decodes them (ASCII, UTF-8, else Latin-1).
            headers=response.raw_headers,
            stream=_ResponseStream(response, request),
            extensions={"reason_phrase": reason_phrase(response)},
            request=request,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def aiohttp_timeout(timeouts: Mapping[str, float | None]) -> aiohttp.ClientTimeout:
    """httpx's per-request timeouts as aiohttp's: ``connect`` and ``pool`` bound getting a connection."""
    return _aiohttp_timeout(timeouts.get("connect"), timeouts.get("pool"), timeouts.get("read"))


@functools.lru_cache(maxsize=64)
def _aiohttp_timeout(connect: float | None, pool: float | None, read: float | None) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=None,
        connect=None if connect is None or pool is None else connect + pool,
        sock_connect=connect,
        sock_read=read,
    )


def reason_phrase(response: aiohttp.ClientResponse) -> bytes:
    """The reason phrase as httpx keeps it (bytes; ``httpx.Response.reason_phrase`` decodes them)."""
    return (response.reason or "").encode("latin-1", "replace")


def finish(response: aiohttp.ClientResponse) -> None:
    """A body left unread (over the cap, or an error) must not go back to the pool half-read."""
    if response.content.at_eof():
        response.release()
    else:
        response.close()


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request | None) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                yield chunk
        except Exception as exc:
            raise _as_httpx(exc, self._request) from None

    async def aclose(self) -> None:
        finish(self._response)


def _as_httpx(exc: Exception, request: httpx.Request | None) -> Exception:
    """The httpx exception httpcore raises for the same failure (``oauth`` classifies those).

    ``oauth.direct`` passes no request: its exceptions then carry none (nor its form).
    """
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(text, request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return httpx.ReadTimeout(text, request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(text, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(text, request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(text, request=request)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return httpx.ReadError(text, request=request)
    return exc
