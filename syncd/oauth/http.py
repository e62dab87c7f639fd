"""The HTTP client a mint goes through: TLS, pool limits, no redirects, one client per token endpoint origin."""

from __future__ import annotations

import functools
import os
import ssl

import httpx
from httpx._utils import get_environment_proxies

from syncd import __version__, logs
from syncd.oauth.transport import AiohttpTransport


def build_http_client(
    *,
    timeout: float = 10.0,
    connect_timeout: float = 5.0,
    ca_bundle: str | None = None,
    client_cert: str | None = None,
    client_key: str | None = None,
    max_connections: int = 100,
) -> httpx.AsyncClient:
    """One shared client for all mints, configured so that secrets only ever go where configured.

    TLS verification cannot be turned off: a ``ca_bundle`` (file or directory)
    *replaces* the default trust store, for private IdPs. Redirects are not
    followed because following one would replay the client secret to another
    URL. HTTP/2 stays off: token requests are tiny and h2 adds a dependency and
    failure modes for no gain. Proxy settings from the environment are honoured
    (``HTTPS_PROXY``/``NO_PROXY``), as is ``SSL_CERT_FILE`` when no bundle is given.
    Requests to origins without a proxy go through :class:`~syncd.oauth.transport.AiohttpTransport`.
    """
    if client_key is not None and client_cert is None:
        raise ValueError("client_key is set but client_cert is not: a TLS client key needs its certificate")
    if max_connections < 1:
        raise ValueError(f"max_connections must be at least 1, got {max_connections}")
    if ca_bundle is None:
        ctx = httpx.create_ssl_context()
    elif os.path.isdir(ca_bundle):
        ctx = ssl.create_default_context(capath=ca_bundle)
    else:
        ctx = ssl.create_default_context(cafile=ca_bundle)
    if client_cert is not None:
        ctx.load_cert_chain(certfile=client_cert, keyfile=client_key)
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    # httpx mounts the environment's proxies only when it builds the default transport itself;
    # with ours given, it is done here, the way httpx does it (NO_PROXY patterns map to None:
    # "no proxy", i.e. our transport).
    proxies: dict[str, httpx.AsyncBaseTransport | None] = {
        pattern: None
        if proxy is None
        else httpx.AsyncHTTPTransport(verify=ctx, http1=True, http2=False, limits=limits, proxy=proxy)
        for pattern, proxy in get_environment_proxies().items()
    }
    return httpx.AsyncClient(
        # aiohttp carries the requests (a third of httpcore's CPU per mint); httpx keeps the rules above.
        transport=AiohttpTransport(ssl_context=ctx, max_connections=max_connections),
        mounts=proxies,
        verify=ctx,
        http1=True,
        http2=False,
        follow_redirects=False,
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        limits=limits,
        headers={"User-Agent": f"syncd/{__version__}"},
    )


# Every mint asks for its origin twice (its client, its concurrency bound); the URLs come from the
# config, so there are few of them, and parsing one costs more than the rest of the lookup.
@functools.lru_cache(maxsize=4096)
def endpoint_origin(url: str) -> str:
    """``scheme://host:port`` of a token endpoint: the unit mint concurrency is bounded by.

    The port is explicit (default filled in) so that ``https://idp`` and
    ``https://idp:443`` share one bound; an unparsable URL is its own unit, its credentials
    scrubbed: the origin names the endpoint in errors and labels ``syncd_mints_waiting``.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return logs.scrub_url(url)
    port = parsed.port or {"https": 443, "http": 80}.get(parsed.scheme)
    return f"{parsed.scheme}://{parsed.host}:{port}"


@functools.lru_cache(maxsize=4096)
def parsed_url(url: str) -> httpx.URL | str:
    """``url`` parsed once for httpx (an ``httpx.URL`` is immutable, so one can serve every mint).

    A URL httpx cannot parse is returned as given: the request then raises the
    same error, at send time, that it would have raised without this cache.
    """
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return url
