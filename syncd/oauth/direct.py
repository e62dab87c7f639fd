"""The token request straight through aiohttp, for clients built by ``build_http_client``.

Through ``httpx.AsyncClient.stream`` a mint pays for httpx's client (send, auth and
redirect handling, Request/Response objects, header merging, form encoding) and for
the conversions in :class:`~syncd.oauth.transport.AiohttpTransport`, on top of
aiohttp's own work: about a third of the client side of a mint (``bench/mint_cost.py``).
When the client would hand the request to our transport anyway, this module sends
the same request through that transport's aiohttp session and keeps, from httpx,
only what ``oauth`` reads: the same headers (the client's defaults merged with the
mint's, then Host, Content-Length and Content-Type, as httpx builds them), the same
form bytes, the client's timeouts, no redirects, and response headers as
``httpx.Headers``. Failures are the httpx exceptions the transport raises (one
mapping, ``transport._as_httpx``), so ``exchange`` classifies both paths in one place;
they carry no request, hence never the form or the Authorization header.

Everything else keeps httpx's path, unchanged: another transport (a test's
``MockTransport``, a user's), a proxy httpx mounted from the environment, a closed
client, client-level auth, params, event hooks or cookies, a URL with userinfo
(httpx turns it into Basic auth) or one httpx would refuse (it raises the same error).
"""

from __future__ import annotations

import functools
import logging
from urllib.parse import urlencode

import aiohttp
import httpx
import yarl

from syncd.oauth.model import MAX_BODY
from syncd.oauth.transport import (
    _CHUNK,
    AiohttpTransport,
    _as_httpx,
    _ResponseStream,
    aiohttp_timeout,
    finish,
    reason_phrase,
)

__all__ = ["direct_transport", "form_body", "read_capped", "send"]

_FORM = "application/x-www-form-urlencoded"
# httpx's client logs every request on this logger; operators who turn on the HTTP stack's
# logs (and the leak tests, which prove those stay clean) see the same line on both paths.
_httpx_log = logging.getLogger("httpx")


def direct_transport(client: httpx.AsyncClient, url: httpx.URL | str) -> AiohttpTransport | None:
    """The transport ``mint`` may send through directly for ``url``, or None: then httpx's path."""
    if not isinstance(url, httpx.URL) or url.scheme not in ("http", "https") or not url.host or url.userinfo:
        return None
    if client.is_closed or client.auth is not None or client.params or client.cookies:
        return None
    hooks = client.event_hooks
    if hooks["request"] or hooks["response"]:
        return None
    # build_http_client mounts httpx's proxy transports from the environment (HTTPS_PROXY,
    # NO_PROXY): only an origin httpx would send through our transport takes the direct path.
    transport = client._transport_for_url(url)  # httpx's own routing, not a copy of it
    return transport if isinstance(transport, AiohttpTransport) else None


async def send(
    transport: AiohttpTransport,
    client: httpx.AsyncClient,
    url: httpx.URL,
    form: dict[str, str],
    headers: dict[str, str],
) -> tuple[int, str, httpx.Headers, bytes | None]:
    """POST ``form`` as ``client.stream`` would; (status, reason, headers, body or None when over MAX_BODY).

    Raises the httpx exception for a transport failure, as the httpx path does.
    """
    body = form_body(form)
    session = transport.session()
    try:
        response = await session.request(
            "POST",
            _aiohttp_url(str(url)),
            data=body,
            headers=_request_headers(client.headers, headers, url, len(body)),
            allow_redirects=False,
            timeout=aiohttp_timeout(client.timeout.as_dict()),
            compress=None,
            skip_auto_headers=("Content-Type",),
        )
    except Exception as exc:
        raise _as_httpx(exc, None) from None
    try:
        reply_headers = httpx.Headers(response.raw_headers)
        reason = reason_phrase(response).decode("ascii", errors="ignore")
        _httpx_log.info('HTTP Request: %s %s "%s %d %s"', "POST", url, "HTTP/1.1", response.status, reason)
        if reply_headers.get("content-encoding", "identity").strip().lower() != "identity":
            # Rare (we ask for identity): let httpx decode, and cap the decoded bytes, as it does.
            decoded = httpx.Response(response.status, headers=reply_headers, stream=_ResponseStream(response, None))
            reply_body = await read_capped(decoded)
        else:
            reply_body = await _read_raw_capped(response, reply_headers)
    finally:
        finish(response)
    if "set-cookie" in reply_headers:
        # httpx would keep the cookie and send it next time; the next mints then take its path.
        kept = httpx.Response(response.status, headers=reply_headers, request=httpx.Request("POST", url))
        client.cookies.extract_cookies(kept)
    return response.status, reason, reply_headers, reply_body


def form_body(form: dict[str, str]) -> bytes:
    """The form as httpx encodes ``data=`` (``application/x-www-form-urlencoded``)."""
    return urlencode(list(form.items()), doseq=True).encode("utf-8")


async def read_capped(response: httpx.Response) -> bytes | None:
    """The body, or None as soon as it is known to exceed MAX_BODY (the rest is never read)."""
    if _declared_too_large(response.headers):
        return None
    buf = bytearray()
    async for chunk in response.aiter_bytes():
        buf += chunk
        if len(buf) > MAX_BODY:
            return None
    return bytes(buf)


async def _read_raw_capped(response: aiohttp.ClientResponse, headers: httpx.Headers) -> bytes | None:
    """``read_capped`` for an undecoded aiohttp body."""
    if _declared_too_large(headers):
        return None
    buf = bytearray()
    try:
        async for chunk in response.content.iter_chunked(_CHUNK):
            buf += chunk
            if len(buf) > MAX_BODY:
                return None
    except Exception as exc:
        raise _as_httpx(exc, None) from None
    return bytes(buf)


def _declared_too_large(headers: httpx.Headers) -> bool:
    declared = headers.get("content-length")
    return declared is not None and declared.strip().isdigit() and int(declared) > MAX_BODY


def _request_headers(
    defaults: httpx.Headers, headers: dict[str, str], url: httpx.URL, length: int
) -> list[tuple[str, str]]:
    """The header list the transport would send for this request (lower-case names, httpx's order).

    httpx merges the client's defaults with the request's (a request header drops every default
    of its name and is appended), adds Content-Length and Content-Type unless set, and puts Host
    first unless set.
    """
    replaced = {name.lower() for name in headers}
    merged = [(k, v) for k, v in defaults.multi_items() if k not in replaced]
    merged += [(name.lower(), value) for name, value in headers.items()]
    present = {k for k, _ in merged}
    if "content-length" not in present:
        merged.append(("content-length", str(length)))
    if "content-type" not in present:
        merged.append(("content-type", _FORM))
    if "host" not in present:
        merged.insert(0, ("host", url.netloc.decode("ascii")))
    return merged


@functools.lru_cache(maxsize=4096)
def _aiohttp_url(url: str) -> yarl.URL:
    # What aiohttp builds from the string the transport passes, parsed once per token URL.
    return yarl.URL(url)
