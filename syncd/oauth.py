"""One OAuth 2.0 client-credentials mint: build the request, send it, validate the answer, classify failures.

This module is deliberately pure of scheduling: it performs exactly one token
request and either returns a :class:`Token` or raises a :class:`MintError`
whose ``kind`` tells the engine how to retry (``transient``: backoff with full
jitter; ``fatal``: a credential/configuration problem, retried at the slow
``fatal_retry`` pace and alerted on). It never logs; the engine logs the
exception message, which is therefore written to be safe and actionable on its
own: it names the credential, the status, the OAuth error and the fix, and it
never contains the client secret, the ``Authorization`` header or a token.

The rules implemented here are the "Minting rules" of docs/design.md.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import os
import re
import ssl
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Literal, NoReturn
from urllib.parse import quote, quote_plus

import httpx
from pydantic import SecretStr

from syncd import __version__, logs
from syncd.http_transport import AiohttpTransport
from syncd.payload import fingerprint

__all__ = [
    "MAX_BODY",
    "AuthMethod",
    "FatalMintError",
    "MintError",
    "MintRequest",
    "Token",
    "TransientMintError",
    "build_http_client",
    "endpoint_origin",
    "mint",
]

AuthMethod = Literal[
    "client_secret_post",
    "client_secret_basic",
    "client_secret_jwt",
    "private_key_jwt",
    "client_assertion",
    "tls_client_auth",
]
#: Methods that send an RFC 7523 client_assertion instead of the secret (built by syncd.client_auth).
_ASSERTION_METHODS = frozenset({"client_secret_jwt", "private_key_jwt", "client_assertion"})

#: A token response is a few KiB at most; anything larger is a misrouted
#: request (an HTML portal, a proxy error page) or hostile, and must not be
#: buffered without bound by a daemon that serves thousands of credentials.
MAX_BODY = 64 * 1024

#: Server-provided text (error_description, odd token types) is untrusted: it
#: goes into logs and /status, so it is cut short and stripped of control chars.
_MAX_SERVER_TEXT = 200
_MAX_ERROR_CODE = 64

#: A lifetime beyond this is not a real token lifetime; accepting it would
#: push expiry timestamps past what RFC 3339 / datetime can represent.
_MAX_LIFETIME = 10 * 365 * 86400.0

#: Form fields that syncd owns. Letting ``extra_params`` replace them would
#: silently change the grant or the identity being asserted.
_RESERVED_FORM_FIELDS = frozenset(
    {"grant_type", "client_id", "client_secret", "scope", "client_assertion", "client_assertion_type"}
)

#: OAuth errors that mean "this credential/configuration is wrong": retrying
#: quickly cannot help, an operator has to act.
_FATAL_OAUTH_ERRORS: Mapping[str, str] = {
    "invalid_client": "the IdP rejected the client credentials",
    # Keycloak answers a wrong client secret with 401 unauthorized_client.
    "unauthorized_client": "the IdP rejected the client credentials",
    "invalid_scope": "the IdP refused the requested scopes",
    "unsupported_grant_type": "the IdP does not allow the client_credentials grant for this client",
    "invalid_request": "the IdP rejected the token request as malformed",
    "invalid_grant": "the IdP refused the client_credentials grant",
}

_FATAL_OAUTH_FIXES: Mapping[str, str] = {
    "invalid_client": "",  # filled in by _credentials_fix: it depends on the auth method
    "unauthorized_client": "",
    "invalid_scope": "check `scopes` against what the client is allowed at the IdP",
    "unsupported_grant_type": "enable the client credentials grant (service account) for this client at the IdP",
    "invalid_request": "check auth_method and extra_params against what the IdP expects",
    "invalid_grant": "check that the client is enabled and allowed the client credentials grant",
}

#: Error codes some servers return from the token endpoint when they are the
#: problem, whatever the HTTP status says.
_TRANSIENT_OAUTH_ERRORS = frozenset({"temporarily_unavailable", "server_error"})

_BEARER = "Bearer"
_FATAL_RETRY_HINT = "retrying every fatal_retry"
_TRANSIENT_RETRY_HINT = "will retry with backoff"


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class MintRequest:
    """Everything needed to mint one token for one credential.

    The secret is a :class:`~pydantic.SecretStr` so that a request object can
    be logged, put in a traceback or shown by a debugger without revealing it.
    """

    credential: str
    token_url: str
    client_id: str
    client_secret: SecretStr
    auth_method: AuthMethod = "client_secret_post"
    scopes: tuple[str, ...] | None = None
    extra_params: Mapping[str, str] = field(default_factory=dict)
    lifetime_fallback: float = 300.0
    mint_timeout: float | None = None
    """Total seconds for the whole exchange (connect, send, every byte of the answer); None: unbounded."""
    #: The signed JWT for the assertion methods, made fresh for this one request.
    client_assertion: SecretStr | None = None


@dataclass(frozen=True)
class Token:
    """A freshly minted access token and the times the engine schedules from.

    ``issued_at`` is the local time the request was *sent*, so ``expires_at``
    errs on the early side by the round-trip time rather than trusting the
    IdP's clock; ``server_skew`` is kept only to be logged. The token is a
    :class:`~pydantic.SecretStr`, so the dataclass ``repr`` shows asterisks.
    """

    access_token: SecretStr
    token_type: str
    scope: str | None
    issued_at: float
    expires_at: float
    fingerprint: str
    lifetime_source: Literal["expires_in", "jwt", "fallback"]
    server_skew: float | None

    @property
    def lifetime(self) -> float:
        return self.expires_at - self.issued_at


# --------------------------------------------------------------------------- errors


class MintError(Exception):
    """A mint that produced no token. ``kind`` decides the retry pace, the message is for humans.

    ``str(exc)`` is one line that names the credential, what happened and what
    to do; it is logged and shown on /status as is. Only ``message`` is stored
    in ``args`` so generic error reporters cannot pick up anything else.
    """

    kind: ClassVar[Literal["transient", "fatal"]] = "fatal"

    def __init__(
        self,
        message: str,
        *,
        credential: str,
        status: int | None = None,
        error: str | None = None,
        description: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        message = _one_line(message)
        super().__init__(message)
        self.message = message
        self.credential = credential
        self.status = status
        self.error = error
        self.description = description
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only attributes would be lost (and unpickling would fail)
        # with Exception's default reduce; errors may cross process/thread
        # boundaries in the engine and the CLI.
        fields = {
            "credential": self.credential,
            "status": self.status,
            "error": self.error,
            "description": self.description,
            "retry_after": self.retry_after,
        }
        return (_rebuild_error, (type(self), self.message, fields))


class TransientMintError(MintError):
    """The IdP or the network is unwell; back off with jitter and honour ``retry_after``."""

    kind = "transient"


class FatalMintError(MintError):
    """The credential or its configuration is wrong; an operator must act."""

    kind = "fatal"


def _rebuild_error(cls: type[MintError], message: str, fields: dict[str, Any]) -> MintError:
    return cls(message, **fields)


# --------------------------------------------------------------------------- HTTP client


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
    Requests to origins without a proxy go through :class:`~syncd.http_transport.AiohttpTransport`.
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
    return httpx.AsyncClient(
        # aiohttp carries the requests (a third of httpcore's CPU per mint); httpx keeps the rules above.
        transport=AiohttpTransport(ssl_context=ctx, max_connections=max_connections),
        verify=ctx,
        http1=True,
        http2=False,
        follow_redirects=False,
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        headers={"User-Agent": f"syncd/{__version__}"},
    )


def endpoint_origin(url: str) -> str:
    """``scheme://host:port`` of a token endpoint: the unit mint concurrency is bounded by.

    The port is explicit (default filled in) so that ``https://idp`` and
    ``https://idp:443`` share one bound; an unparsable URL is its own unit.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return url
    port = parsed.port or {"https": 443, "http": 80}.get(parsed.scheme)
    return f"{parsed.scheme}://{parsed.host}:{port}"


# --------------------------------------------------------------------------- mint


@dataclass(frozen=True)
class _Reply:
    """What is kept of an HTTP exchange: never the request, so never the secret."""

    status: int
    reason: str
    headers: httpx.Headers
    body: bytes | None  # None: larger than MAX_BODY
    received_at: float


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
    """Send the request and read at most MAX_BODY bytes; transport failures become MintErrors."""
    url = _display_url(req.token_url)
    issued_at = clock()
    try:
        async with client.stream("POST", req.token_url, data=form, headers=headers, follow_redirects=False) as response:
            body = await _read_capped(response)
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


async def _read_capped(response: httpx.Response) -> bytes | None:
    """The body, or None as soon as it is known to exceed MAX_BODY (the rest is never read)."""
    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > MAX_BODY:
        return None
    buf = bytearray()
    async for chunk in response.aiter_bytes():
        buf += chunk
        if len(buf) > MAX_BODY:
            return None
    return bytes(buf)


def _interpret(req: MintRequest, url: str, reply: _Reply, issued_at: float, redact: _Redactor) -> Token:
    """Turn a complete HTTP reply into a Token or a classified error."""
    status = reply.status
    cred = req.credential
    if reply.body is None:
        raise TransientMintError(
            f"credential {cred!r}: token endpoint {url} returned a response larger than {MAX_BODY // 1024} KiB "
            f"with status {status} (not an OAuth response); {_TRANSIENT_RETRY_HINT}",
            credential=cred,
            status=status,
            retry_after=_retry_after(reply),
        )
    if 200 <= status < 300:
        return _parse_token(req, url, reply, issued_at, redact)
    _raise_for_error_status(req, url, reply, redact)


def _raise_for_error_status(req: MintRequest, url: str, reply: _Reply, redact: _Redactor) -> NoReturn:
    """Classify a non-2xx reply: credential/configuration problems are fatal, server trouble transient."""
    status = reply.status
    cred = req.credential
    body = reply.body or b""
    doc = _json_object(body)
    stray_token = doc.get("access_token") if doc is not None else None
    if isinstance(stray_token, str) and stray_token:
        redact = redact.plus(stray_token)
    error = _error_code(doc, redact)
    description = _error_description(doc, redact)
    detail = _status_detail(status, error, description)

    transient = status in (408, 429) or status >= 500 or error in _TRANSIENT_OAUTH_ERRORS
    if transient:
        if doc is None and _looks_like_html(reply):
            what = f"returned an HTML page with status {status} (not an OAuth response)"
        elif doc is None and body.strip():
            what = f"returned status {status} with a body that is not an OAuth response"
        else:
            shown = f"{status} {error}" + (f": {description}" if description else "") if error else f"status {status}"
            what = f"is rate limiting requests ({shown})" if status == 429 else f"returned {shown}"
        retry_after = _retry_after(reply)
        wait = f" after Retry-After {retry_after:g}s" if retry_after is not None else " with backoff"
        raise TransientMintError(
            f"credential {cred!r}: token endpoint {url} {what}; will retry{wait}",
            credential=cred,
            status=status,
            error=error,
            description=description,
            retry_after=retry_after,
        )

    if 300 <= status < 400:
        location = reply.headers.get("location")
        target = f" to {_display_url(location)}" if location else ""
        raise FatalMintError(
            f"credential {cred!r}: token endpoint {url} redirected ({status}){target}: set token_url to the final "
            f"URL (syncd never follows redirects with client credentials); {_FATAL_RETRY_HINT}",
            credential=cred,
            status=status,
            error=error,
            description=description,
        )
    if status in (404, 405):
        reason = f" {_clean(reply.reason, 40, redact)}" if reply.reason else ""
        raise FatalMintError(
            f"credential {cred!r}: token endpoint {url} returned {status}{reason}: token_url is wrong "
            f"(it must be the IdP's token endpoint, e.g. .../protocol/openid-connect/token); {_FATAL_RETRY_HINT}",
            credential=cred,
            status=status,
            error=error,
            description=description,
        )
    if error is not None and error in _FATAL_OAUTH_ERRORS:
        raise FatalMintError(
            f"credential {cred!r}: {_FATAL_OAUTH_ERRORS[error]} ({detail}): "
            f"{_FATAL_OAUTH_FIXES[error] or _credentials_fix(req)}; {_FATAL_RETRY_HINT}",
            credential=cred,
            status=status,
            error=error,
            description=description,
        )
    if status == 401:
        raise FatalMintError(
            f"credential {cred!r}: the IdP rejected the client credentials ({detail}): "
            f"{_credentials_fix(req)}; {_FATAL_RETRY_HINT}",
            credential=cred,
            status=status,
            error=error,
            description=description,
        )
    if status == 403:
        raise FatalMintError(
            f"credential {cred!r}: the IdP refused access ({detail}): check that the client is enabled and allowed "
            f"the client credentials grant and its scopes; {_FATAL_RETRY_HINT}",
            credential=cred,
            status=status,
            error=error,
            description=description,
        )
    kind = "HTML page" if doc is None and _looks_like_html(reply) else "response"
    raise FatalMintError(
        f"credential {cred!r}: token endpoint {url} refused the request ({detail}, {kind}): "
        f"check token_url, auth_method and extra_params; {_FATAL_RETRY_HINT}",
        credential=cred,
        status=status,
        error=error,
        description=description,
    )


def _credentials_fix(req: MintRequest) -> str:
    """What to check when the IdP rejects the client: the settings the configured method uses."""
    if req.auth_method == "private_key_jwt":
        return (
            "check client_id, that the IdP holds the public key of private_key (and key_id), "
            "signing_alg and assertion_audience"
        )
    if req.auth_method == "client_assertion":
        return "check client_id and that the IdP trusts the issuer of the client_assertion token file"
    if req.auth_method == "tls_client_auth":
        return "check client_id and that the IdP maps the client certificate (client_cert) to this client"
    if req.auth_method == "client_secret_jwt":
        return "check client_id, client_secret (the HMAC key), signing_alg and assertion_audience"
    return "check client_id, client_secret and auth_method"


def _parse_token(req: MintRequest, url: str, reply: _Reply, issued_at: float, redact: _Redactor) -> Token:
    """Validate a 2xx token response (RFC 6749 5.1); anything malformed is a transient invalid response."""
    cred = req.credential
    status = reply.status

    def invalid(why: str, error: str | None = None) -> TransientMintError:
        return TransientMintError(
            f"credential {cred!r}: token endpoint {url} returned {status} but not a valid token response "
            f"({why}); {_TRANSIENT_RETRY_HINT}",
            credential=cred,
            status=status,
            error=error,
            retry_after=_retry_after(reply),
        )

    body = reply.body or b""
    doc = _json_object(body)
    if doc is None:
        if _looks_like_html(reply):
            raise TransientMintError(
                f"credential {cred!r}: token endpoint {url} returned an HTML page with status {status} "
                f"(not an OAuth response); {_TRANSIENT_RETRY_HINT}",
                credential=cred,
                status=status,
                retry_after=_retry_after(reply),
            )
        raise invalid("body is not a JSON object" if body.strip() else "empty body")

    access_token = doc.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        error = _error_code(doc, redact)
        if "access_token" not in doc:
            why = "no access_token" + (f"; error {error}" if error else "")
        else:
            why = "access_token is not a non-empty string"
        raise invalid(why, error)
    if not _is_vschar(access_token):
        # RFC 6749 A.12: a token is VSCHARs. Anything else would corrupt the
        # Authorization headers consumers build from it.
        raise invalid("access_token contains characters not allowed in a token")
    redact = redact.plus(access_token)

    raw_type = doc.get("token_type")
    if raw_type is None:
        raise invalid("no token_type")
    if not isinstance(raw_type, str):
        raise invalid("token_type is not a string")
    if raw_type.strip().lower() != "bearer":
        shown = _clean(raw_type, 40, redact)
        raise FatalMintError(
            f"credential {cred!r}: the IdP issued a {shown!r} token but syncd only handles Bearer tokens: "
            f"configure the client at the IdP to issue Bearer tokens (no DPoP/MAC binding); {_FATAL_RETRY_HINT}",
            credential=cred,
            status=status,
        )

    scope_value = doc.get("scope")
    if scope_value is not None and not isinstance(scope_value, str):
        raise invalid("scope is not a string")
    if scope_value:
        scope: str | None = scope_value
    elif req.scopes:
        scope = " ".join(req.scopes)
    else:
        scope = None

    claims = _jwt_times(access_token)
    server_skew = claims[1] - issued_at if claims is not None and claims[1] is not None else None

    lifetime_source: Literal["expires_in", "jwt", "fallback"]
    raw_expires = doc.get("expires_in")
    if raw_expires is not None:
        expires_in = _number(raw_expires)
        if expires_in is None:
            raise invalid("expires_in is not a number")
        if expires_in <= 0:
            raise invalid(f"expires_in is {expires_in:g}, not positive")
        lifetime = expires_in
        lifetime_source = "expires_in"
    elif claims is not None and claims[0] is not None and claims[1] is not None:
        lifetime = claims[0] - claims[1]
        if lifetime <= 0:
            raise invalid("no expires_in and the JWT's exp is not after its iat")
        lifetime_source = "jwt"
    else:
        lifetime = req.lifetime_fallback
        lifetime_source = "fallback"
    if lifetime > _MAX_LIFETIME:
        raise invalid(f"a lifetime of {lifetime:g}s is not plausible")

    return Token(
        access_token=SecretStr(access_token),
        token_type=_BEARER,
        scope=scope,
        issued_at=issued_at,
        expires_at=issued_at + lifetime,
        fingerprint=fingerprint(access_token),
        lifetime_source=lifetime_source,
        server_skew=server_skew,
    )


# --------------------------------------------------------------------------- parsing helpers


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None (not JSON, not an object, or absurdly nested)."""
    if not body.strip():
        return None
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _looks_like_html(reply: _Reply) -> bool:
    ctype = reply.headers.get("content-type", "").lower()
    if "html" in ctype:
        return True
    head = (reply.body or b"")[:512].lstrip().lower()
    return head.startswith((b"<!doctype", b"<html", b"<head", b"<body", b"<?xml"))


def _error_code(doc: Mapping[str, Any] | None, redact: _Redactor) -> str | None:
    value = doc.get("error") if doc is not None else None
    if not isinstance(value, str) or not value.strip():
        return None
    return _clean(value, _MAX_ERROR_CODE, redact)


def _error_description(doc: Mapping[str, Any] | None, redact: _Redactor) -> str | None:
    value = doc.get("error_description") if doc is not None else None
    if not isinstance(value, str) or not value.strip():
        return None
    return _clean(value, _MAX_SERVER_TEXT, redact)


def _status_detail(status: int, error: str | None, description: str | None) -> str:
    if error and description:
        return f"{status} {error}: {description}"
    if error:
        return f"{status} {error}"
    return f"{status}, no OAuth error in the response"


def _number(value: object) -> float | None:
    """A JSON number or numeric string as a finite float; bools are not numbers here."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def _jwt_times(token: str) -> tuple[float | None, float | None] | None:
    """(exp, iat) of a JWS compact token, or None when the token is not a JWT.

    The signature is not verified: the values are only a lifetime hint when
    the response has no expires_in, and a skew figure for the logs.
    """
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        return None
    header = _b64url_json(parts[0])
    payload = _b64url_json(parts[1])
    if header is None or payload is None:
        return None
    return _number(payload.get("exp")), _number(payload.get("iat"))


def _b64url_json(segment: str) -> dict[str, Any] | None:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return None
    return _json_object(raw)


def _retry_after(reply: _Reply) -> float | None:
    """Retry-After as seconds from now: delay-seconds or an HTTP date; past dates give 0, nonsense None."""
    value = reply.headers.get("retry-after")
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    seconds = _number(text) if text.lstrip("+-").replace(".", "", 1).isdigit() else None
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 5322 says UTC with unknown origin
        when = when.replace(tzinfo=UTC)
    try:
        delay = when.timestamp() - reply.received_at
    except (OverflowError, OSError, ValueError):
        return None
    return max(0.0, delay) if math.isfinite(delay) else None


_VSCHAR_RE = re.compile(r"[\x20-\x7e]*")


def _is_vschar(text: str) -> bool:
    # One regex pass instead of a per-character generator: tokens are often ~1 KB JWTs.
    return _VSCHAR_RE.fullmatch(text) is not None


def _clean(
    text: str, limit: int, redact: Callable[[str], str] | None = None, *, scrub: Callable[[str], str] = logs.scrub_text
) -> str:
    """Server text made safe for a one-line log: secrets out, control/format chars to spaces, then truncate.

    Redaction runs on the whole text before anything else: once a secret is cut in two
    (or split by a control character turned into a space) it is no longer recognisable.
    """
    if redact is not None:
        text = redact(text)
    cleaned = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text)
    return logs.shorten(" ".join(cleaned.split()), limit, scrub=scrub)


def _one_line(text: str) -> str:
    return " ".join("".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text).split())


def _display_url(url: str) -> str:
    """The URL for messages: no userinfo, no secret query values, no control characters.

    Userinfo and secret-looking query parameters are replaced (``https://***@host/p?token=***``)
    rather than dropped, so the operator still sees that the configured URL carries them.
    """
    # The URL comes from the config, not from a server: only its own credentials need
    # hiding, and this runs on every mint, so skip the full scan for registered secrets.
    return _clean(url, 300, scrub=logs.scrub_url) or "''"


def _describe_exc(exc: Exception) -> str:
    detail = _clean(str(exc), _MAX_SERVER_TEXT)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


class _Redactor:
    """Last line of defence: removes secrets from text that may echo them (server descriptions, OS errors).

    The messages built here never interpolate a secret; this guards against a
    server or proxy that echoes the request back.
    """

    def __init__(self, needles: tuple[str, ...]) -> None:
        self._needles = tuple(sorted({n for n in needles if n}, key=len, reverse=True))

    @classmethod
    def for_request(cls, req: MintRequest, headers: Mapping[str, str]) -> _Redactor:
        secret = req.client_secret.get_secret_value()
        needles = [secret, quote_plus(secret, safe=""), quote(secret, safe="")]
        if req.client_assertion is not None:
            needles.append(req.client_assertion.get_secret_value())
        auth = headers.get("Authorization")
        if auth:
            needles += [auth, auth.removeprefix("Basic ")]
        return cls(tuple(needles))

    def plus(self, *more: str) -> _Redactor:
        return _Redactor(self._needles + more)

    def __call__(self, text: str) -> str:
        for needle in self._needles:
            text = text.replace(needle, "***")
        return text


def _redacted(exc: MintError, redact: _Redactor) -> MintError:
    """A copy of ``exc`` with every text field passed through ``redact``."""
    return type(exc)(
        redact(exc.message),
        credential=exc.credential,
        status=exc.status,
        error=redact(exc.error) if exc.error is not None else None,
        description=redact(exc.description) if exc.description is not None else None,
        retry_after=exc.retry_after,
    )
