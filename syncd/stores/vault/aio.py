"""KV requests from the event loop over one aiohttp session: many reads at once, and the plain write.

A request through hvac and ``requests`` costs about 1.5 ms of CPU (request preparation,
urllib3, hooks), held under the GIL in the store's threads: 10,000 credentials read
back at start-up spent some 15 s there, and every rotation's write is two such requests.
The same request from aiohttp on the event loop costs about a fifth of that, and needs no
thread.

* :meth:`AioRequests.read` sends the data path's GET for every item and hands each answer
  to :meth:`~syncd.stores.vault.kv.KvPaths.read_answered`, the parser the hvac path uses
  too: a payload, nothing, or the same error.
* :meth:`AioRequests.write` sends a rotation's write when it is the plain case
  (:meth:`~syncd.stores.vault.kv.KvPaths.plain_write`: the path's version known, the
  mount checked): the data with ``cas``, then the two metadata fields, the requests the
  hvac path would send, and records the same state from their answers.

Only plain answers are taken this way (a 200 with a KV version, a 204, Vault's "nothing
here" 404). Any other answer, and any failure to get one, goes to the store's own
``read`` or ``write``: its message, its log-in-again on a denial, its check-and-set
conflict handling, its classification stay the only ones. A write whose data request
may have landed is safe to hand over: the hvac path's ``cas`` then conflicts, it looks
the path up and finds this very token there (or finishes the metadata it lacks). The
event-loop path is not used at all when a ``requests`` call would go through a proxy,
before the store has logged in and checked its mount, or when its token is due for
renewal.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import hvac.utils
import requests
import requests.utils

from syncd.payload import TokenPayload
from syncd.stores.base import WriteResult
from syncd.stores.vault.kv import KvPaths, NotPlain

__all__ = ["AioRequests"]

#: How long an idle connection is kept (start-up reads come in a burst, then no more).
KEEPALIVE_EXPIRY = 5.0

Result = TokenPayload | None | Exception
OneByOne = Callable[[str], Awaitable[TokenPayload | None]]
#: The store's own write of this key and payload (hvac, in its threads).
SlowWrite = Callable[[], Awaitable[WriteResult]]


#: The largest answer taken from Vault here (a KV answer is a few KB); a larger one goes to hvac.
MAX_ANSWER = 1 << 20


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > MAX_ANSWER:
            raise ValueError("answer too large")  # the caller's fallback: hvac's path tells what it is
        chunks.append(chunk)
    return b"".join(chunks)


class _Fallback(Exception):
    """This item goes to the store's own ``read`` or ``write`` (hvac)."""


class AioRequests:
    """KV requests from the event loop, with the hvac client's address, token, namespace and TLS settings."""

    def __init__(self, client: Any, session: requests.Session, kv: KvPaths, *, timeout: float, connections: int):
        self._client = client  # hvac.Client: base URL, current token, namespace
        self._requests = session  # the store's requests session: TLS and proxy settings to mirror
        self._kv = kv
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        # A write request whole within the store's timeout: an answer dripping in slower than that
        # is cut and the write handed to the hvac path, instead of holding the rotation open.
        self._write_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=timeout, sock_read=timeout)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ssl: ssl.SSLContext | bool | None = None
        self._proxied: bool | None = None  # would requests use a proxy for Vault's address? (environment)

    def usable(self) -> bool:
        """Whether a request from here means what the hvac path's would (no proxy, mount checked, token set)."""
        adapter = self._client.adapter
        if not adapter.token or not self._kv.mount_checked:
            return False
        if self._proxied is None:  # once: reading the proxy variables costs a millisecond
            base = adapter.base_uri
            try:
                proxies = self._requests.merge_environment_settings(base, {}, None, None, None).get("proxies") or {}
                self._proxied = requests.utils.select_proxy(base, proxies) is not None
            except Exception:  # not a requests session we can ask (a test's stand-in): keep to hvac
                self._proxied = True
        return not self._proxied

    async def read(self, keys: Sequence[str], one_by_one: OneByOne) -> list[Result]:
        """Each key's read result, in order; an answer that is not plain is ``one_by_one(key)``'s."""
        try:
            session = self._session_for_loop()
        except Exception:  # e.g. a CA bundle ssl cannot load: the hvac path says what is wrong, per item
            return list(await asyncio.gather(*(self._one_by_one(one_by_one, k) for k in keys)))
        headers = self._headers()

        async def one(key: str) -> Result:
            try:
                return await self._get(session, key, headers)
            except _Fallback:
                return await self._one_by_one(one_by_one, key)
            except Exception as exc:  # one item's failure is that item's result
                return exc

        return list(await asyncio.gather(*(one(k) for k in keys)))

    async def write(self, key: str, payload: TokenPayload, fmt: str, slow: SlowWrite) -> WriteResult:
        """Write ``payload`` at ``key``: from here when it is the plain case and Vault answers so, else ``slow()``."""
        plan = self._kv.plain_write(key, payload, fmt)
        if plan is None:
            return await slow()
        version, body = plan
        try:
            session = self._session_for_loop()
        except Exception:  # e.g. a CA bundle ssl cannot load: the hvac path says what is wrong
            return await slow()
        headers = self._headers()
        try:
            status, answer = await self._post(session, "/v1/{mount}/data/{path}", key, body, headers)
        except _Fallback:
            return await slow()
        data = answer.get("data") if status == 200 and isinstance(answer, dict) else None
        written = data.get("version") if isinstance(data, dict) else None
        if type(written) is not int or written <= version:
            return await slow()  # a conflict, a denial, an error, or not Vault's answer: the hvac path's to tell
        self._kv.data_written(key, payload, written)
        try:
            status, _ = await self._post(
                session, "/v1/{mount}/metadata/{path}", key, self._kv.metadata_body(payload), headers
            )
        except _Fallback:
            return await slow()  # finishes the metadata only (``written_fingerprint`` says the data is there)
        if status not in (200, 204):
            return await slow()
        self._kv.metadata_written(key, payload)
        return WriteResult(written=True, version=str(written), location=self._kv.data_path(key))

    async def _post(
        self, session: aiohttp.ClientSession, template: str, key: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, Any]:
        """POST ``body`` as JSON to the KV path; its status and JSON answer (None when it has none)."""
        url = self._url(template, key)
        try:
            async with session.post(
                url, json=body, headers=headers, allow_redirects=False, timeout=self._write_timeout
            ) as resp:
                status = resp.status
                raw = await _read_capped(resp)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            raise _Fallback from None
        if not raw:
            return status, None
        try:
            return status, json.loads(raw)
        except ValueError:
            raise _Fallback from None

    def _headers(self) -> dict[str, str]:
        adapter = self._client.adapter
        headers = {"X-Vault-Request": "true", "X-Vault-Token": adapter.token}
        if adapter.namespace:
            headers["X-Vault-Namespace"] = adapter.namespace
        return headers

    def _url(self, template: str, key: str) -> str:
        path = hvac.utils.format_url(template, mount=self._kv.mount, path=key)
        while "//" in path:  # as hvac's adapter does
            path = path.replace("//", "/")
        return str(self._client.adapter.urljoin(self._client.adapter.base_uri, path))

    @staticmethod
    async def _one_by_one(one_by_one: OneByOne, key: str) -> Result:
        try:
            return await one_by_one(key)
        except Exception as exc:  # one item's failure is that item's result
            return exc

    async def _get(self, session: aiohttp.ClientSession, key: str, headers: dict[str, str]) -> TokenPayload | None:
        url = self._url("/v1/{mount}/data/{path}" if self._kv.kv_version == 2 else "/v1/{mount}/{path}", key)
        try:
            async with session.get(url, headers=headers, allow_redirects=False) as resp:
                status = resp.status
                raw = await _read_capped(resp)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            raise _Fallback from None
        if status not in (200, 404):
            raise _Fallback
        try:
            body = json.loads(raw)
        except ValueError:
            raise _Fallback from None
        try:
            return self._kv.read_answered(key, status, body)
        except NotPlain:
            raise _Fallback from None

    def _session_for_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            if self._ssl is None:
                self._ssl = self._ssl_like_requests()
            connector = aiohttp.TCPConnector(
                limit=self._connections, limit_per_host=0, ssl=self._ssl, keepalive_timeout=KEEPALIVE_EXPIRY
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                trust_env=False,  # a proxied address never comes here (usable)
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            self._loop = loop
        return self._session

    def _ssl_like_requests(self) -> ssl.SSLContext | bool:
        """The TLS settings a ``requests`` call with the store's session would use (verify, CA bundle, client cert)."""
        base = self._client.adapter.base_uri
        if not base.lower().startswith("https://"):
            return False
        settings = self._requests.merge_environment_settings(base, {}, None, self._requests.verify, self._requests.cert)
        verify, cert = settings.get("verify", True), settings.get("cert")
        if verify is False:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            bundle = requests.utils.DEFAULT_CA_BUNDLE_PATH if verify is True else str(verify)
            if os.path.isdir(bundle):
                ctx = ssl.create_default_context(capath=bundle)
            else:
                ctx = ssl.create_default_context(cafile=bundle)
        if isinstance(cert, tuple):
            ctx.load_cert_chain(cert[0], cert[1])
        elif cert:
            ctx.load_cert_chain(cert)
        return ctx

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()
