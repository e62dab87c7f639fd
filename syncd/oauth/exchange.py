"""One mint: build the request, send it under one deadline, read a capped answer, hand it to answer.py."""

from __future__ import annotations

import asyncio
import base64
import math
import time
from collections.abc import Callable
from urllib.parse import quote_plus

import httpx

from syncd.oauth import direct
from syncd.oauth.answer import _interpret
from syncd.oauth.http import parsed_url
from syncd.oauth.model import (
    _ASSERTION_METHODS,
    _FATAL_RETRY_HINT,
    _RESERVED_FORM_FIELDS,
    _TRANSIENT_RETRY_HINT,
    FatalMintError,
    MintError,
    MintRequest,
    Token,
    TransientMintError,
    _Reply,
)
from syncd.oauth.text import (
    _describe_exc,
    _display_url,
    _redacted,
    _Redactor,
)


async def mint(
    client: httpx.AsyncClient,
    req: MintRequest,
    *,
    clock: Callable[[], float] = time.time,
    deadline: float | None = None,
) -> Token:
    """Mint one access token for ``req``, or raise a classified :class:`MintError`.

    ``clock`` is read immediately before the request is sent; that instant is
    ``issued_at``, so expiry is computed from our own clock and never from the
    IdP's. A ``ValueError`` (not a MintError) means ``req`` itself is invalid
    and nothing was sent.

    ``deadline`` (event loop time) ends the exchange however far it got; by
    default it is ``req.mint_timeout`` from now. A caller that queued the mint
    passes the deadline it started with, so the queue counts against it too.
    """
    form, headers = _build_request(req)
    url = _display_url(req.token_url)
    redact = _Redactor.for_request(req, headers)
    if deadline is None and req.mint_timeout is not None:
        deadline = asyncio.get_running_loop().time() + req.mint_timeout
    # The exchange runs in a helper and errors are raised here, outside any
    # ``except`` block: neither __cause__ nor __context__ can then carry an
    # httpx exception, whose ``.request`` holds the form and the Authorization header.
    issued_at, outcome = await _exchange_until(client, req, form, headers, clock, deadline=deadline)
    del form, headers
    if isinstance(outcome, MintError):
        raise _redacted(outcome, redact)
    try:
        return _interpret(req, url, outcome, issued_at, redact)
    except MintError as exc:
        failure = exc
    raise _redacted(failure, redact)


def _build_request(req: MintRequest) -> tuple[dict[str, str], dict[str, str]]:
    """The form and headers for ``req``; refuses configurations that would change the grant."""
    reserved = sorted(_RESERVED_FORM_FIELDS.intersection(req.extra_params))
    if reserved:
        raise ValueError(
            f"credential {req.credential!r}: extra_params may not set {', '.join(reserved)} "
            "(syncd sends grant_type, client_id and client_secret itself; use `scopes` for scope)"
        )
    if req.auth_method not in ("client_secret_post", "client_secret_basic", "tls_client_auth", *_ASSERTION_METHODS):
        raise ValueError(
            f"credential {req.credential!r}: unknown auth_method {req.auth_method!r} "
            "(use client_secret_post, client_secret_basic, client_secret_jwt, private_key_jwt, client_assertion "
            "or tls_client_auth)"
        )
    if (req.auth_method in _ASSERTION_METHODS) != (req.client_assertion is not None):
        raise ValueError(f"credential {req.credential!r}: auth_method {req.auth_method} and client_assertion disagree")
    if not math.isfinite(req.lifetime_fallback) or req.lifetime_fallback <= 0:
        raise ValueError(f"credential {req.credential!r}: lifetime_fallback must be positive seconds")
    if req.mint_timeout is not None and (not math.isfinite(req.mint_timeout) or req.mint_timeout <= 0):
        raise ValueError(f"credential {req.credential!r}: mint_timeout must be positive seconds")
    form: dict[str, str] = {"grant_type": "client_credentials"}
    headers: dict[str, str] = {
        "Accept": "application/json",
        # Token responses are tiny; compression would only let a small body
        # inflate past the size cap before we could stop reading it.
        "Accept-Encoding": "identity",
        "Cache-Control": "no-store",
    }
    secret = req.client_secret.get_secret_value()
    if req.auth_method == "client_secret_basic":
        headers["Authorization"] = _basic_authorization(req.client_id, secret)
    elif req.client_assertion is not None:
        form["client_id"] = req.client_id
        form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        form["client_assertion"] = req.client_assertion.get_secret_value()
    elif req.auth_method == "tls_client_auth":
        form["client_id"] = req.client_id  # RFC 8705 2: the TLS client certificate is the proof
    else:
        form["client_id"] = req.client_id
        form["client_secret"] = secret
    if req.scopes:
        form["scope"] = " ".join(req.scopes)
    form.update(req.extra_params)
    return form, headers


def _basic_authorization(client_id: str, client_secret: str) -> str:
    """RFC 6749 2.3.1: form-urlencode id and secret *before* base64, so ':' in the id stays unambiguous."""
    pair = f"{quote_plus(client_id, safe='')}:{quote_plus(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


async def _exchange_until(
    client: httpx.AsyncClient,
    req: MintRequest,
    form: dict[str, str],
    headers: dict[str, str],
    clock: Callable[[], float],
    *,
    deadline: float | None,
) -> tuple[float, _Reply | MintError]:
    """`_exchange`, cut off at ``deadline``.

    httpx's timeouts are per operation: an IdP that sends one byte every few
    seconds never trips the read timeout and would hold the mint (and a
    connection, and a concurrency slot) for as long as it likes.
    """
    if deadline is None:
        return await _exchange(client, req, form, headers, clock)
    started = clock()
    try:
        async with asyncio.timeout_at(deadline):
            return await _exchange(client, req, form, headers, clock)
    except TimeoutError:
        pass
    shown = f"{req.mint_timeout:g}s" if req.mint_timeout is not None else "its deadline"
    return started, TransientMintError(
        f"credential {req.credential!r}: the IdP did not answer within mint_timeout={shown} "
        f"(token endpoint {_display_url(req.token_url)} is hanging or sending its answer too slowly); "
        f"{_TRANSIENT_RETRY_HINT}",
        credential=req.credential,
    )


async def _exchange(
    client: httpx.AsyncClient,
    req: MintRequest,
    form: dict[str, str],
    headers: dict[str, str],
    clock: Callable[[], float],
) -> tuple[float, _Reply | MintError]:
    """Send the request and read at most MAX_BODY bytes; transport failures become MintErrors.

    A client built by ``build_http_client`` sends through aiohttp directly (``direct``); any
    other, or a proxied origin, through httpx. Both raise the same httpx exceptions, classified here.
    """
    url = _display_url(req.token_url)
    issued_at = clock()
    target = parsed_url(req.token_url)  # parsed once per URL, not at every mint
    try:
        transport = direct.direct_transport(client, target)
        if transport is not None and isinstance(target, httpx.URL):
            status, reason, reply_headers, body = await direct.send(transport, client, target, form, headers)
            return issued_at, _Reply(
                status=status, reason=reason, headers=reply_headers, body=body, received_at=clock()
            )
        async with client.stream("POST", target, data=form, headers=headers, follow_redirects=False) as response:
            body = await direct.read_capped(response)
            return issued_at, _Reply(
                status=response.status_code,
                reason=response.reason_phrase,
                headers=response.headers,
                body=body,
                received_at=clock(),
            )
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        return issued_at, FatalMintError(
            f"credential {req.credential!r}: token_url {url} is not a usable http(s) URL ({_describe_exc(exc)}): "
            f"fix token_url; {_FATAL_RETRY_HINT}",
            credential=req.credential,
        )
    except httpx.TimeoutException as exc:
        return issued_at, TransientMintError(
            f"credential {req.credential!r}: token endpoint {url} timed out ({type(exc).__name__}); "
            f"{_TRANSIENT_RETRY_HINT}",
            credential=req.credential,
        )
    except httpx.DecodingError as exc:
        return issued_at, TransientMintError(
            f"credential {req.credential!r}: token endpoint {url} sent a body that could not be decoded "
            f"({type(exc).__name__}; not an OAuth response); {_TRANSIENT_RETRY_HINT}",
            credential=req.credential,
        )
    except httpx.RequestError as exc:
        # Connection refused/reset, DNS failure, TLS failure, peer closed mid-response, pool exhausted...
        return issued_at, TransientMintError(
            f"credential {req.credential!r}: could not reach token endpoint {url} ({_describe_exc(exc)}); "
            f"{_TRANSIENT_RETRY_HINT}",
            credential=req.credential,
        )
