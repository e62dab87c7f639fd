"""Many KV reads at once, for start-up adoption: GETs over one aiohttp session, answered by :mod:`.kv`.

A read through hvac and ``requests`` costs about 1.5 ms of CPU (request preparation,
urllib3, hooks), held under the GIL in the store's threads: 10,000 credentials read
back at start-up spent some 15 s there. The same GET from aiohttp on the event loop
costs about a fifth of that, and needs no thread. So :meth:`BulkReader.read` sends the
data path's GET for every item and hands each answer to
:meth:`~syncd.stores.vault.kv.KvPaths.read_answered`, the parser the hvac path uses
too: a payload, nothing, or the same error.

Only plain answers are taken this way (a 200, Vault's "nothing here" 404). Any other
answer, and any failure to get one, is read again by the store's own ``read``: its
message, its log-in-again on a denial, its classification stay the only ones. The bulk
path is not used at all when a ``requests`` call would go through a proxy, before the
store has logged in and checked its mount, or when its token is due for renewal.
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
from syncd.stores.vault.kv import KvPaths, NotPlain

__all__ = ["BulkReader"]

#: How long an idle connection is kept (start-up reads come in a burst, then no more).
KEEPALIVE_EXPIRY = 5.0

Result = TokenPayload | None | Exception
OneByOne = Callable[[str], Awaitable[TokenPayload | None]]


class _Fallback(Exception):
    """This item is read again by the store's own ``read``."""


class BulkReader:
    """KV GETs from the event loop, with the hvac client's address, token, namespace and TLS settings."""

    def __init__(self, client: Any, session: requests.Session, kv: KvPaths, *, timeout: float, connections: int):
        self._client = client  # hvac.Client: base URL, current token, namespace
        self._requests = session  # the store's requests session: TLS and proxy settings to mirror
        self._kv = kv
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ssl: ssl.SSLContext | bool | None = None
        self._proxied: bool | None = None  # would requests use a proxy for Vault's address? (environment)

    def usable(self) -> bool:
        """Whether a GET from here means what the hvac path's would (no proxy, mount checked, token set)."""
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
        adapter = self._client.adapter
        headers = {"X-Vault-Request": "true", "X-Vault-Token": adapter.token}
        if adapter.namespace:
            headers["X-Vault-Namespace"] = adapter.namespace

        async def one(key: str) -> Result:
            try:
                return await self._get(session, key, headers)
            except _Fallback:
                return await self._one_by_one(one_by_one, key)
            except Exception as exc:  # one item's failure is that item's result
                return exc

        return list(await asyncio.gather(*(one(k) for k in keys)))

    @staticmethod
    async def _one_by_one(one_by_one: OneByOne, key: str) -> Result:
        try:
            return await one_by_one(key)
        except Exception as exc:  # one item's failure is that item's result
            return exc

    async def _get(self, session: aiohttp.ClientSession, key: str, headers: dict[str, str]) -> TokenPayload | None:
        if self._kv.kv_version == 2:
            path = hvac.utils.format_url("/v1/{mount}/data/{path}", mount=self._kv.mount, path=key)
        else:
            path = hvac.utils.format_url("/v1/{mount}/{path}", mount=self._kv.mount, path=key)
        while "//" in path:  # as hvac's adapter does
            path = path.replace("//", "/")
        url = self._client.adapter.urljoin(self._client.adapter.base_uri, path)
        try:
            async with session.get(url, headers=headers, allow_redirects=False) as resp:
                status = resp.status
                raw = await resp.read()
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
