"""Vault / OpenBao KV store (``type = "vault"``): the write side the daemon uses.

A thin layer over the package's parts: :mod:`.layout` (what goes where),
:mod:`.kv` (KV v1/v2 requests, check-and-set), :mod:`.auth` (the store's own
token) and :mod:`.errors` (what a failure means). Blocking hvac calls run in the
store's bounded thread pool; one hvac client (one ``requests`` session, pooled to
``max_workers``) serves every credential. Start-up adoption and the read-backs read
many paths at once, and a rotation's plain write goes, through :mod:`.aio` (aiohttp on
the loop, ``max_workers`` connections); everything else through hvac.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import hvac
import requests
import requests.adapters

from syncd import logs
from syncd.payload import TokenPayload
from syncd.stores.base import FatalStoreError, Finding, StoreError, ThreadedStore, WriteResult
from syncd.stores.vault.aio import AioRequests
from syncd.stores.vault.auth import DEFAULT_K8S_JWT, Lease, TokenKeeper
from syncd.stores.vault.errors import Context, Denied, Op, StatusAdapter, classify_error
from syncd.stores.vault.kv import KvPaths

if TYPE_CHECKING:
    from syncd.config import StoreConfig, TargetConfig, VaultStoreConfig
    from syncd.stores.batch import ReadItem, ReadResult

T = TypeVar("T")
log = logs.get_logger("syncd.stores.vault")

RENEWER_MIN_SLEEP = 0.5
RENEWER_MAX_SLEEP = 5.0  # re-evaluate at least this often (a login elsewhere may have changed the lease)


def is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class VaultStore(ThreadedStore):
    """``type = "vault"``: the Store interface (docs/design.md) over a Vault / OpenBao KV mount."""

    def __init__(
        self,
        name: str,
        config: VaultStoreConfig,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name, max_workers=config.max_workers)
        self.config = config
        self.mount = config.mount
        self.kv_version = config.kv_version
        self._clock = clock
        self._ctx = Context(
            store=name,
            url=config.url,
            mount=config.mount,
            kv_version=config.kv_version,
            namespace=config.namespace,
            timeout=config.timeout,
        )
        verify: bool | str = str(config.ca_cert) if config.ca_cert else not config.tls_skip_verify
        cert: str | tuple[str, str] | None = None
        if config.client_cert and config.client_key:
            cert = (str(config.client_cert), str(config.client_key))
        elif config.client_cert:
            cert = str(config.client_cert)
        if session is None:
            session = requests.Session()
            # No urllib3 retries: the engine owns retry pacing. One pooled connection per worker
            # (+1 for the renewer) so concurrent credentials never wait for a socket.
            http = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=config.max_workers + 1, max_retries=0)
            session.mount("https://", http)
            session.mount("http://", http)
        session.verify = verify
        session.cert = cert
        self._session = session
        # token="" (not None): hvac would otherwise pick VAULT_TOKEN or ~/.vault-token on its own.
        self._client: Any = hvac.Client(
            url=config.url,
            token="",  # empty on purpose, see above  # nosec B106
            verify=verify,
            cert=cert,
            timeout=config.timeout,
            session=session,
            adapter=StatusAdapter,
            namespace=config.namespace,
        )
        self._token = TokenKeeper(name, config, self._client, self._ctx, clock)
        self._kv = KvPaths(name, self._client, self._ctx, config.max_versions)
        self._aio = AioRequests(self._client, session, self._kv, timeout=config.timeout, connections=config.max_workers)
        self._renewer: asyncio.Task[None] | None = None
        self._closed = False
        self._store_findings_given = False
        if config.tls_skip_verify:
            log.warning(
                "vault_tls_verification_disabled",
                store=name,
                url=config.url,
                risk="anyone on the network path can impersonate Vault and read every token syncd writes",
                fix="set ca_cert to the CA bundle instead of tls_skip_verify",
            )
        if config.url.startswith("http://") and not is_loopback_url(config.url):
            log.warning(
                "vault_plaintext_http",
                store=name,
                url=config.url,
                risk="the Vault token and every access token cross the network unencrypted",
                fix="use an https:// address",
            )

    @classmethod
    def from_config(cls, name: str, config: StoreConfig) -> VaultStore:
        from syncd.config import VaultStoreConfig

        if not isinstance(config, VaultStoreConfig):
            raise TypeError(f"store {name!r}: expected a vault store config")
        return cls(name, config)

    # ------------------------------------------------------------------ paths

    def check_key(self, key: str) -> str:
        k = key.strip()
        parts = k.split("/")
        if not k or k.startswith("/") or k.endswith("/") or "//" in k or any(p in (".", "..") for p in parts):
            raise FatalStoreError(
                f"store {self.name!r}: key {key!r} is not a KV path: use segments such as 'vgs/calm' "
                "(no leading or trailing '/', no '.' or '..')",
                code="key",
            )
        return k

    def data_path(self, key: str) -> str:
        return self._kv.data_path(key)

    def metadata_path(self, key: str) -> str:
        return self._kv.metadata_path(key)

    @property
    def _lease(self) -> Lease:
        """The own token's lease, as the keeper last recorded it (read without the lock: a snapshot)."""
        return self._token.lease

    # ------------------------------------------------------------------ own token, in the background

    async def _renew_loop(self) -> None:
        """Keep the token alive between writes that are further apart than its TTL.

        It only sleeps and looks at the lease (no I/O) until renewal is due, then runs the
        same ``TokenKeeper.ensure`` as the write path, so both agree on what is due.
        """
        failures = 0
        while not self._closed:
            left = self._token.seconds_until_due()
            if left is None or left > 0:
                # Not logged in yet (the first request is doing it): look again soon.
                idle = RENEWER_MAX_SLEEP if self._lease.generation else RENEWER_MIN_SLEEP
                await asyncio.sleep(idle if left is None else min(left, RENEWER_MAX_SLEEP))
                continue
            try:
                await self._run(self._token.ensure)
                failures = 0
            except StoreError as exc:
                failures += 1
                delay = min(2.0**failures, 30.0)
                log.warning("vault_token_maintenance", store=self.name, retry_in=delay, **logs.error_fields(exc))
                await asyncio.sleep(delay)
            except RuntimeError:
                return  # the pool was shut down under us (aclose)
            await asyncio.sleep(RENEWER_MIN_SLEEP)  # never spin, whatever the lease says

    def _start_renewer(self) -> None:
        if self._renewer is not None or self._closed:
            return
        with contextlib.suppress(RuntimeError):
            self._renewer = asyncio.get_running_loop().create_task(self._renew_loop(), name=f"vault-renew-{self.name}")

    # ------------------------------------------------------------------ sync entry points

    def _write_sync(self, key: str, payload: TokenPayload, fmt: str) -> WriteResult:
        return self._guarded(lambda: self._token.authed(lambda: self._kv.write(key, payload, fmt)))

    def _read_sync(self, key: str) -> TokenPayload | None:
        return self._guarded(lambda: self._token.authed(lambda: self._kv.read(key)))

    def _guarded(self, fn: Callable[[], T]) -> T:
        """Last line: nothing but a StoreError leaves the store, and never with a secret in it."""
        try:
            return fn()
        except StoreError:
            raise
        except Denied as denied:  # pragma: no cover - TokenKeeper.authed converts these
            raise FatalStoreError(denied.error.message, code=denied.error.code) from None
        except Exception as exc:
            raise classify_error(exc, Op("use", self.mount), self._ctx) from None

    # ------------------------------------------------------------------ Store interface

    async def write(self, key: str, payload: TokenPayload, *, target: TargetConfig | None = None) -> WriteResult:
        key = self.check_key(key)
        fmt = target.format if target else "json"
        self._start_renewer()

        def slow() -> Awaitable[WriteResult]:
            return self._run(self._write_sync, key, payload, fmt)

        if self._aio_ready():
            return await self._aio.write(key, payload, fmt, slow)
        return await slow()

    async def read(self, key: str, *, target: TargetConfig | None = None) -> TokenPayload | None:
        return await self._read_checked(self.check_key(key))

    async def read_many(self, items: Sequence[ReadItem]) -> list[ReadResult]:
        """Optional batch read (syncd.stores.batch): plain answers through :mod:`.aio`, the rest by ``read``.

        Until the store has logged in and checked its mount (and whenever its token is due), the
        first item is read by ``read``, which does both; then the others go the event-loop way if they can.
        """
        results: list[ReadResult] = [None] * len(items)
        keys: list[tuple[int, str]] = []
        for i, (key, _) in enumerate(items):
            try:
                keys.append((i, self.check_key(key)))
            except StoreError as exc:
                results[i] = exc
        if keys and not self._aio_ready():
            i, key = keys.pop(0)
            results[i] = await self._read_or_error(key)
        if keys and self._aio_ready():
            got = await self._aio.read([k for _, k in keys], self._read_checked)
        else:
            got = list(await asyncio.gather(*(self._read_or_error(k) for _, k in keys)))
        for (i, _), result in zip(keys, got, strict=True):
            results[i] = result
        return results

    def _aio_ready(self) -> bool:
        due = self._token.seconds_until_due()
        return self._lease.generation > 0 and (due is None or due > 0) and self._aio.usable()

    async def _read_checked(self, key: str) -> TokenPayload | None:
        self._start_renewer()
        return await self._run(self._read_sync, key)

    async def _read_or_error(self, key: str) -> ReadResult:
        try:
            return await self._read_checked(key)
        except Exception as exc:  # one item's failure is that item's result
            return exc

    async def aclose(self) -> None:
        self._closed = True
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._renewer
            self._renewer = None
        with contextlib.suppress(Exception):
            await self._aio.aclose()
        await super().aclose()
        self._session.close()

    def plan(self, key: str, writes_per_day: float, *, target: TargetConfig | None = None) -> list[Finding]:
        findings: list[Finding] = []
        subject = f"{self.name}:{key}"
        try:
            self.check_key(key)
        except StoreError as exc:
            findings.append(Finding("error", subject, exc.message))
        if self._store_findings_given:
            return findings
        self._store_findings_given = True
        cfg = self.config
        store = f"store {self.name}"
        if cfg.tls_skip_verify:
            findings.append(
                Finding(
                    "warning",
                    store,
                    "tls_skip_verify = true: Vault's certificate is not checked, so anyone on the network path can "
                    "impersonate Vault and read every token syncd writes",
                    "set ca_cert to the CA bundle that signed Vault's certificate",
                )
            )
        if cfg.url.startswith("http://") and not is_loopback_url(cfg.url):
            findings.append(
                Finding(
                    "warning",
                    store,
                    f"{cfg.url} is plain HTTP to a non-loopback host: the Vault token and every access token "
                    "cross the network unencrypted",
                    "use an https:// address",
                )
            )
        if cfg.client_key is not None and cfg.client_cert is None:
            findings.append(Finding("error", store, "client_key is set without client_cert", "set client_cert too"))
        if cfg.kv_version == 1:
            findings.append(
                Finding(
                    "info",
                    store,
                    "KV v1 has no versions and no check-and-set: two daemons writing the same key overwrite each "
                    "other (last write wins; both tokens are valid), and `raw` targets store the public fields "
                    "beside the token",
                )
            )
        auth = cfg.auth
        if auth.method == "token" and auth.token_file is not None and not auth.token_file.exists():
            findings.append(
                Finding(
                    "warning", store, f"auth.token_file {auth.token_file} does not exist", "create it or fix the path"
                )
            )
        if auth.method in ("kubernetes", "jwt") and not auth.jwt_file.exists():
            where = " (only present inside a Kubernetes pod)" if str(auth.jwt_file) == DEFAULT_K8S_JWT else ""
            findings.append(
                Finding("warning", store, f"auth.jwt_file {auth.jwt_file} does not exist{where}", "fix the path")
            )
        return findings
