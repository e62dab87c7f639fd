"""FakeIdP: a scriptable OAuth 2.0 token endpoint for fault injection.

Use the real OAuth server (:class:`tests.peers.servers.OidcServer`) whenever a
test needs correct behaviour. Use :class:`FakeIdP` only for what a correct
server will not produce on demand: 5xx and HTML error pages, ``Retry-After``,
responses without ``expires_in``, JWT-only lifetimes, slow or dropped
connections, answers dripped a byte at a time, requests that hang, oversized
or non-JSON bodies, odd ``token_type`` values, and an exact record of what the
client sent.

It is an aiohttp server on a free 127.0.0.1 port, run by a background thread
with its own event loop, so synchronous tests, async tests and a ``syncd``
subprocess can all use it. It serves only::

    POST /auth/realms/vgs/protocol/openid-connect/token

Each request takes the next scripted response; when the script is empty,
``idp.default`` applies::

    with FakeIdP(clients={"calm": "s3cret"}) as idp:
        idp.script([error(503), retry_after(429, "2"), ok(ttl=5)])
        idp.default = ok(ttl=3)
        ...
        assert idp.count == 4
        assert idp.requests[0].form["grant_type"] == "client_credentials"

Request checks happen before the script is consulted and do not consume it:
``grant_type`` must be ``client_credentials`` (else 400
``unsupported_grant_type``); credentials in both the form and an Authorization
header give 400 ``invalid_request``; and when ``idp.clients`` is set the
credentials must match (else 401 ``invalid_client``). Both client_secret_post
and client_secret_basic are accepted; Basic credentials are form-urldecoded
after base64 decoding (RFC 6749 section 2.3.1).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import email.utils
import json
import secrets
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import parse_qsl, unquote_plus

from aiohttp import web

TOKEN_PATH = "/auth/realms/vgs/protocol/openid-connect/token"
HOST = "127.0.0.1"


# --------------------------------------------------------------------------- response kinds


@dataclass(frozen=True)
class OkResponse:
    """200 with a token. See :func:`ok`."""

    ttl: float | None = 3
    token: str | None = None
    token_type: str = "Bearer"
    scope: str | None = None
    include_expires_in: bool = True
    jwt: bool = False
    extra: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ErrorResponse:
    """An OAuth error: JSON body ``{"error": ..., "error_description": ...}``. See :func:`error`."""

    status: int
    error_code: str | None = None
    description: str | None = None
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class HtmlResponse:
    """An HTML page (a proxy or load-balancer error page). See :func:`html`."""

    status: int = 502
    body: str = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"


@dataclass(frozen=True)
class RetryAfterResponse:
    """429/503 with a ``Retry-After`` header and a JSON error body. See :func:`retry_after`."""

    status: int = 429
    value: str = "2"


@dataclass(frozen=True)
class DelayResponse:
    """Wait ``seconds``, then answer with ``then``. See :func:`delay`."""

    seconds: float
    then: Response = field(default_factory=OkResponse)


@dataclass(frozen=True)
class RawResponse:
    """Exact status, body bytes and headers. See :func:`raw`."""

    status: int
    body: bytes
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class DripResponse:
    """Send ``then`` one byte every ``interval`` seconds. See :func:`drip`."""

    interval: float
    then: Response = field(default_factory=OkResponse)


@dataclass(frozen=True)
class CachedResponse:
    """A caching IdP: the same token until it expires, with what is left as ``expires_in``. See :func:`cached`."""

    ttl: float


@dataclass(frozen=True)
class CloseConnection:
    """Drop the connection without any response. See :func:`close`."""


Response = (
    OkResponse
    | ErrorResponse
    | HtmlResponse
    | RetryAfterResponse
    | DelayResponse
    | DripResponse
    | CachedResponse
    | RawResponse
    | CloseConnection
)


def ok(
    ttl: float | None = 3,
    token: str | None = None,
    token_type: str = "Bearer",
    scope: str | None = None,
    include_expires_in: bool = True,
    jwt: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> OkResponse:
    """A successful token response.

    ``token`` defaults to a fresh random string (unique per request). With
    ``jwt=True`` the token is an unsigned JWT (``alg: none``) whose ``iat`` is now
    and ``exp`` is ``iat + ttl`` (no ``exp`` when ``ttl`` is None).
    ``expires_in`` is ``ttl`` unless ``include_expires_in`` is False or ``ttl`` is
    None. ``scope`` is omitted when None. ``extra`` is merged into the JSON body
    last, so it can add fields or override any of the above (e.g. a string
    ``expires_in``).
    """
    return OkResponse(ttl, token, token_type, scope, include_expires_in, jwt, extra)


def error(
    status: int,
    error_code: str | None = None,
    description: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> ErrorResponse:
    """An OAuth error response; ``error_code`` defaults from the status (400 invalid_request,
    401 invalid_client, 403 unauthorized_client, 503 temporarily_unavailable, other 5xx server_error)."""
    return ErrorResponse(status, error_code, description, headers)


def html(status: int = 502, body: str | None = None) -> HtmlResponse:
    """An HTML page with ``Content-Type: text/html`` (200 or an error status)."""
    return HtmlResponse(status) if body is None else HtmlResponse(status, body)


def retry_after(status: int = 429, value: str | int | float | datetime = "2") -> RetryAfterResponse:
    """429 or 503 with ``Retry-After``: seconds (``"2"``, ``2``) or an HTTP date.

    A ``datetime`` (naive means UTC) is formatted as an IMF-fixdate.
    """
    if isinstance(value, datetime):
        when = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        text = email.utils.format_datetime(when, usegmt=True)
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    return RetryAfterResponse(status, text)


def delay(seconds: float, then: Response | None = None) -> DelayResponse:
    """Answer after ``seconds`` (for client timeout tests); ``then`` defaults to :func:`ok`."""
    return DelayResponse(seconds, then if then is not None else OkResponse())


def hang() -> DelayResponse:
    """Never answer (until the FakeIdP stops): the request stays open, no byte is sent."""
    return DelayResponse(24 * 3600.0)


def drip(interval: float = 0.2, then: Response | None = None) -> DripResponse:
    """Send the status line and headers at once, then the body one byte per ``interval`` seconds.

    Each byte arrives well within any read timeout, so only a deadline on the
    whole exchange stops a client from waiting ``len(body) * interval`` seconds.
    ``then`` (default :func:`ok`) must render a complete body (not ``close()``).
    """
    return DripResponse(interval, then if then is not None else OkResponse())


def cached(ttl: float) -> CachedResponse:
    """Answer like an IdP that caches client-credentials tokens (one cache per FakeIdP).

    The first request gets a new token living ``ttl`` seconds; later ones get the
    same token with ``expires_in`` = the seconds it has left (a float), until it
    expires and a new one is cached.
    """
    return CachedResponse(ttl)


def raw(status: int, body: bytes | str, headers: Mapping[str, str] | None = None) -> RawResponse:
    """Exactly this status, body and headers (e.g. a body over 64 KiB, or one that is not JSON)."""
    return RawResponse(status, body.encode() if isinstance(body, str) else body, headers)


def close() -> CloseConnection:
    """Close the connection after reading the request, without sending a response."""
    return CloseConnection()


def make_jwt(claims: Mapping[str, Any], header: Mapping[str, Any] | None = None) -> str:
    """An unsigned JWS compact serialization (``header.payload.`` with an empty signature)."""

    def b64(obj: Mapping[str, Any]) -> str:
        data = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return f"{b64(header or {'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


# --------------------------------------------------------------------------- the server


class RecordedRequest(NamedTuple):
    """One request as received: ``(time, headers, form)``.

    ``time`` is ``time.time()`` on arrival, ``headers`` has lower-cased names,
    ``form`` is the decoded form body (last value wins for repeated names).
    """

    time: float
    headers: dict[str, str]
    form: dict[str, str]

    @property
    def auth_method(self) -> str | None:
        """``client_secret_basic``, ``client_secret_post`` or None (no credentials)."""
        if self.headers.get("authorization", "").lower().startswith("basic "):
            return "client_secret_basic"
        if "client_secret" in self.form:
            return "client_secret_post"
        return None

    @property
    def client_id(self) -> str | None:
        """The client id from the form or the Basic header (decoded), if any."""
        creds = _basic_credentials(self.headers.get("authorization", ""))
        if creds is not None:
            return creds[0]
        return self.form.get("client_id")


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, param = header.partition(" ")
    if scheme.lower() != "basic" or not param:
        return None
    try:
        decoded = base64.b64decode(param.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return unquote_plus(user), unquote_plus(password)


def _default_error_code(status: int) -> str:
    return {
        400: "invalid_request",
        401: "invalid_client",
        403: "unauthorized_client",
        429: "slow_down",
        503: "temporarily_unavailable",
    }.get(status, "server_error" if status >= 500 else "invalid_request")


def _json_response(status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> web.Response:
    hdrs = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    hdrs.update(headers or {})
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", headers=hdrs)


class FakeIdP:
    """Scriptable in-process token endpoint for fault injection (see the module docstring).

    Attributes:
        clients: ``{client_id: secret}`` to verify credentials, or None to accept any.
        default: the response once the script is exhausted (``ok()`` initially).
        requests: every request received, as :class:`RecordedRequest` tuples.
        tokens: every access token minted by an ``ok`` response, in order.
    """

    def __init__(
        self,
        *,
        clients: Mapping[str, str] | None = None,
        default: Response | None = None,
        port: int = 0,
    ) -> None:
        self.clients: dict[str, str] | None = dict(clients) if clients is not None else None
        self.default: Response = default if default is not None else OkResponse()
        self.requests: list[RecordedRequest] = []
        self.tokens: list[str] = []
        self.port = port
        self._script: deque[Response] = deque()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._cache: tuple[str, float] | None = None  # (token, expires at) for cached()

    # -- script -----------------------------------------------------------------------------

    def script(self, responses: Iterable[Response]) -> None:
        """Queue responses; each request consumes one, then ``default`` applies."""
        with self._lock:
            self._script.extend(responses)

    @property
    def pending(self) -> int:
        """Scripted responses not yet consumed."""
        with self._lock:
            return len(self._script)

    @property
    def count(self) -> int:
        """Number of requests received."""
        with self._lock:
            return len(self.requests)

    @property
    def last(self) -> RecordedRequest:
        with self._lock:
            return self.requests[-1]

    def reset(self) -> None:
        """Forget requests and tokens, clear the script, restore ``default = ok()``."""
        with self._lock:
            self.requests.clear()
            self.tokens.clear()
            self._script.clear()
            self.default = OkResponse()

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> None:
        """Block until at least ``n`` requests arrived; TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= n, timeout):
                raise TimeoutError(f"FakeIdP got {len(self.requests)} requests, expected {n} within {timeout}s")

    # -- URLs -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}{TOKEN_PATH}"

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        """Listen on 127.0.0.1 (``port``, or a free one the first time) in a background thread."""
        if self.running:
            raise RuntimeError("FakeIdP already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self.port))
        self.port = int(sock.getsockname()[1])
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve(sock))
            except BaseException as exc:
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"FakeIdP:{self.port}", daemon=True)
        self._thread.start()
        if not started.wait(10) or failure:
            sock.close()
            raise RuntimeError(f"FakeIdP failed to start: {failure[0] if failure else 'timeout'}")
        return self

    async def _serve(self, sock: socket.socket) -> None:
        app = web.Application()
        app.router.add_post(TOKEN_PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    @staticmethod
    async def _shutdown(runner: web.AppRunner | None) -> None:
        # Cancel in-flight handlers first (e.g. a long delay()), so stopping is quick and clean.
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if runner is not None:
            await runner.cleanup()

    def stop(self) -> None:
        """Stop listening and join the thread. Idempotent; the port is kept for a later ``start()``."""
        loop, thread, runner = self._loop, self._thread, self._runner
        if loop is None or thread is None:
            return
        if loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(runner), loop).result(10)
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._thread = self._runner = None

    def restart(self) -> Self:
        """Stop and listen again on the same port; script, default and records are kept."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<FakeIdP {self.token_url} requests={self.count} pending={self.pending}>"

    # -- request handling ---------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        headers = {k.lower(): v for k, v in request.headers.items()}
        record = RecordedRequest(time.time(), headers, form)
        with self._cond:
            self.requests.append(record)
            self._cond.notify_all()

        rejected = self._check(headers, form)
        if rejected is not None:
            return rejected
        with self._lock:
            response = self._script.popleft() if self._script else self.default
        return await self._render(request, response, record.client_id)

    def _check(self, headers: Mapping[str, str], form: Mapping[str, str]) -> web.Response | None:
        if form.get("grant_type") != "client_credentials":
            return _json_response(
                400,
                {"error": "unsupported_grant_type", "error_description": f"grant_type={form.get('grant_type')!r}"},
            )
        authorization = headers.get("authorization")
        if authorization is not None and "client_secret" in form:
            return _json_response(
                400,
                {"error": "invalid_request", "error_description": "more than one client authentication method"},
            )
        if self.clients is None:
            return None
        if authorization is not None:
            creds = _basic_credentials(authorization)
            if creds is None:
                return _json_response(
                    400, {"error": "invalid_request", "error_description": "malformed Authorization header"}
                )
            client_id, secret = creds
            if "client_id" in form and form["client_id"] != client_id:
                return _json_response(400, {"error": "invalid_request", "error_description": "client_id mismatch"})
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        expected = self.clients.get(client_id)
        if expected is None or not secrets.compare_digest(expected.encode(), secret.encode()):
            extra = {"WWW-Authenticate": 'Basic realm="vgs"'} if authorization is not None else None
            return _json_response(
                401, {"error": "invalid_client", "error_description": "Invalid client credentials"}, extra
            )
        return None

    async def _render(self, request: web.Request, response: Response, client_id: str | None) -> web.StreamResponse:
        match response:
            case OkResponse():
                return self._render_ok(response, client_id)
            case ErrorResponse(status=status, error_code=code, description=description, headers=headers):
                body: dict[str, Any] = {"error": code or _default_error_code(status)}
                if description is not None:
                    body["error_description"] = description
                return _json_response(status, body, headers)
            case HtmlResponse(status=status, body=text):
                return web.Response(status=status, text=text, content_type="text/html")
            case RetryAfterResponse(status=status, value=value):
                return _json_response(
                    status,
                    {"error": _default_error_code(status), "error_description": "try again later"},
                    {"Retry-After": value},
                )
            case DelayResponse(seconds=seconds, then=then):
                await asyncio.sleep(seconds)
                return await self._render(request, then, client_id)
            case DripResponse(interval=interval, then=then):
                whole = await self._render(request, then, client_id)
                if not isinstance(whole, web.Response) or whole.body is None:
                    raise TypeError(f"drip() needs a response with a body, not {then!r}")
                data = whole.body if isinstance(whole.body, bytes) else whole.text.encode()
                stream = web.StreamResponse(status=whole.status, headers=whole.headers)
                stream.content_length = len(data)
                await stream.prepare(request)
                for i in range(len(data)):
                    await stream.write(data[i : i + 1])
                    await asyncio.sleep(interval)
                await stream.write_eof()
                return stream
            case CachedResponse(ttl=ttl):
                now = time.time()
                with self._lock:
                    if self._cache is None or self._cache[1] <= now:
                        self._cache = (secrets.token_urlsafe(32), now + ttl)
                    token, expires = self._cache
                    self.tokens.append(token)
                return _json_response(200, {"access_token": token, "token_type": "Bearer", "expires_in": expires - now})
            case RawResponse(status=status, body=data, headers=headers):
                return web.Response(status=status, body=data, headers=dict(headers or {}))
            case CloseConnection():
                transport = request.transport
                if transport is not None:
                    transport.abort()
                # Nothing reaches the client; aiohttp discards this on the closed transport.
                return web.Response(status=500)
        raise TypeError(f"not a FakeIdP response: {response!r}")

    def _render_ok(self, response: OkResponse, client_id: str | None) -> web.Response:
        now = int(time.time())
        if response.jwt:
            claims: dict[str, Any] = {
                "iss": f"{self.base_url}/auth/realms/vgs",
                "sub": client_id or "fake-client",
                "azp": client_id or "fake-client",
                "iat": now,
                "jti": str(uuid.uuid4()),
                "typ": "Bearer",
            }
            if response.ttl is not None:
                claims["exp"] = now + int(response.ttl)
            if response.scope is not None:
                claims["scope"] = response.scope
            token = make_jwt(claims)
        else:
            token = response.token or secrets.token_urlsafe(32)
        body: dict[str, Any] = {"access_token": token, "token_type": response.token_type}
        if response.include_expires_in and response.ttl is not None:
            body["expires_in"] = response.ttl
        if response.scope is not None:
            body["scope"] = response.scope
        body.update(response.extra or {})
        with self._lock:
            self.tokens.append(token)
        return _json_response(200, body)
