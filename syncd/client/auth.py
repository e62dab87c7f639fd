"""HTTP authentication with a syncd token: httpx (sync and async) and requests.

The 401 rule is written once, as the generator :func:`syncd.client.core.on_401`
(httpx's ``auth_flow`` idea): it yields "send with this header" or "read the
store again", and returns when it is done. The httpx flows and the requests
response hook here only drive it: they do the sending and the reading.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from syncd.client.aio import AsyncTokenReader
from syncd.client.core import Answer, Reread, Send, Step, authorization_header, on_401
from syncd.client.shared import emit, log
from syncd.client.sync import TokenReader
from syncd.payload import TokenPayload
from syncd.stores.reading import TokenError

if TYPE_CHECKING:
    import requests

ReaderLike = TokenReader | AsyncTokenReader | str | os.PathLike[str]
Flow = Generator[Step, Answer, Any]


def _advance(flow: Flow, answer: Answer | None) -> Step | None:
    """The flow's next step after ``answer``, or None when it is done (having logged why)."""
    try:
        return flow.send(answer)  # type: ignore[arg-type]  # None starts the generator
    except StopIteration as done:
        emit(done.value)
        return None


def _authorized(request: httpx.Request, step: Send) -> httpx.Request:
    emit(step.note)
    request.headers["Authorization"] = step.authorization
    return request


def _reread(reader: TokenReader, step: Reread) -> TokenPayload | TokenError:
    try:
        return reader.refresh(rejected=step.rejected)
    except TokenError as exc:
        return exc


async def _reread_async(reader: AsyncTokenReader, step: Reread) -> TokenPayload | TokenError:
    try:
        return await reader.refresh(rejected=step.rejected)
    except TokenError as exc:
        return exc


class SyncdAuth(httpx.Auth):
    """httpx authentication with a syncd token, for ``httpx.Client`` and ``httpx.AsyncClient``.

    ``reader`` is a :class:`TokenReader`, an :class:`AsyncTokenReader` or a source
    URL (reader options go in ``**options``). The sync flow uses a TokenReader,
    the async flow an AsyncTokenReader; the missing one is made on demand and
    shares the cache of the one given.

    On a 401 the store is re-read once (bypassing the cache) and the request is
    sent again only if the store has a different token; otherwise, or if the
    re-read fails, the 401 goes to the caller. Never more than one retry.
    Request bodies are buffered so that the retry can resend them.
    """

    requires_request_body = True

    def __init__(self, reader: ReaderLike, **options: Any) -> None:
        self._sync: TokenReader | None = None
        self._async: AsyncTokenReader | None = None
        if isinstance(reader, TokenReader | AsyncTokenReader) and options:
            raise TypeError("reader options apply only when SyncdAuth is given a source URL")
        if isinstance(reader, TokenReader):
            self._sync = reader
        elif isinstance(reader, AsyncTokenReader):
            self._async = reader
        else:
            self._sync = TokenReader(reader, **options)
        self._twin_lock = threading.Lock()

    @property
    def reader(self) -> TokenReader:
        with self._twin_lock:
            if self._sync is None:
                assert self._async is not None
                self._sync = TokenReader._sharing(self._async._cache)
            return self._sync

    @property
    def async_reader(self) -> AsyncTokenReader:
        with self._twin_lock:
            if self._async is None:
                assert self._sync is not None
                self._async = AsyncTokenReader._sharing(self._sync._cache)
            return self._async

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        reader = self.reader
        flow = on_401(reader.source, request.url.host, reader.token_info())
        answer: Answer | None = None
        while (step := _advance(flow, answer)) is not None:
            if isinstance(step, Reread):
                answer = _reread(reader, step)
            else:
                answer = (yield _authorized(request, step)).status_code

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        reader = self.async_reader
        flow = on_401(reader.source, request.url.host, await reader.token_info())
        answer: Answer | None = None
        while (step := _advance(flow, answer)) is not None:
            if isinstance(step, Reread):
                answer = await _reread_async(reader, step)
            else:
                answer = (yield _authorized(request, step)).status_code


class SyncdRequestsAuth:
    """requests authentication with a syncd token (``session.auth = SyncdRequestsAuth(...)``).

    ``reader`` is a :class:`TokenReader` or a source URL (reader options go in
    ``**options``). A response hook handles a 401: one forced re-read, and one
    resend only if the store has a different token; otherwise the 401 is
    returned. A body that cannot be rewound (a generator) is not resent.
    """

    def __init__(self, reader: TokenReader | str | os.PathLike[str], **options: Any) -> None:
        if isinstance(reader, TokenReader):
            if options:
                raise TypeError("reader options apply only when SyncdRequestsAuth is given a source URL")
            self.reader = reader
        else:
            self.reader = TokenReader(reader, **options)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        sent = self.reader.token_info()
        r.headers["Authorization"] = authorization_header(sent)
        position: int | None = None
        body = r.body
        if body is not None and hasattr(body, "seek") and hasattr(body, "tell"):
            try:
                position = int(body.tell())
            except (OSError, ValueError):
                position = None

        def on_response(response: requests.Response, **kwargs: Any) -> requests.Response:
            return self._answer(response, sent, position, **kwargs)

        r.register_hook("response", on_response)  # type: ignore[no-untyped-call]
        return r

    def _answer(
        self, response: requests.Response, sent: TokenPayload, position: int | None, **kwargs: Any
    ) -> requests.Response:
        request = response.request
        host = urlsplit(request.url or "").hostname or "?"
        flow = on_401(self.reader.source, host, sent)
        _advance(flow, None)  # the first send: __call__ put its header on the request
        step = _advance(flow, response.status_code)
        if isinstance(step, Reread):
            step = _advance(flow, _reread(self.reader, step))
        if not isinstance(step, Send):
            return response
        emit(step.note)
        body = request.body
        if body is not None and not isinstance(body, bytes | str):
            if position is None:
                log.warning("%s: cannot resend to %s: the request body is a stream", self.reader.source, host)
                return response
            body.seek(position)
        from requests.cookies import extract_cookies_to_jar

        response.content  # noqa: B018 - drain the 401 so its connection goes back to the pool
        response.close()
        retry = request.copy()
        cookies = getattr(retry, "_cookies", None)
        if cookies is not None:
            extract_cookies_to_jar(cookies, request, response.raw)  # type: ignore[no-untyped-call]
            retry.prepare_cookies(cookies)
        retry.headers["Authorization"] = step.authorization
        connection = getattr(response, "connection", None)
        if connection is None:  # pragma: no cover - requests always sets it on adapter responses
            return response
        new: requests.Response = connection.send(retry, **kwargs)
        new.history.append(response)
        new.request = retry
        return new
