"""Vault / OpenBao KV store (``type = "vault"``): KV v1 and v2, check-and-set, own-token life cycle.

Wire format (the consumer reader depends on it):

* KV v2, ``format = "json"``: the data is ``TokenPayload.to_dict()``, every field a
  top-level key, so ``bao kv get -field=access_token secret/vgs/calm`` works.
* KV v2, ``format = "raw"``: the data is ``{"access_token": "..."}`` only; the
  public fields live in the path's ``custom_metadata``.
* Every KV v2 write also sets the path's ``custom_metadata`` (``credential``,
  ``expires_at``, ``issued_at``, ``refresh_after``, ``fingerprint``,
  ``token_type``, ``scope``) and ``max_versions``. Custom metadata describes the
  path, not a version, so it has to be rewritten with every new token to stay
  true: one metadata POST per rotation, carrying ``max_versions`` at no extra
  cost. Steady state is therefore two requests per rotation (data, metadata).
* KV v1 has no metadata: ``json`` and ``raw`` both store the full payload (the
  public fields beside the token), which is what a v1 reader needs.

KV v2 writes use ``cas`` = the version this process last wrote or read for the
path. A check-and-set mismatch means another writer (a second daemon, or a
human) changed the path: the store re-reads it and, if it holds a token of the
same credential that expires later than ours, returns it as
``WriteResult.adopted`` without writing (the engine adopts it); otherwise it
retries with the version it just read, a bounded number of times.

The daemon's own Vault token: after a login (or, for ``token`` auth, after
reading the token and looking it up) the store knows its TTL. Before every
request it checks, without I/O, whether renewal is due (``renew_before`` of the
TTL left, at most half the TTL); a background task also wakes at that time, so a
token is kept alive between writes that are further apart than its TTL. When a
renewal no longer extends the token (its max TTL caps it) the store logs in
again. A 403 on a request logs in again (``token`` auth re-reads the file or
variable) and retries once; a second 403 is fatal, with a message that names the
policy path and capability. Login and renewal hold a lock: hvac keeps the token
on the shared adapter, and one fresh login is enough for every thread.

Blocking hvac calls run in the store's bounded thread pool; one hvac client (one
``requests`` session, pooled to ``max_workers``) serves every credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

import hvac
import hvac.adapters
import hvac.exceptions
import hvac.utils
import requests
import requests.adapters

from syncd import logs
from syncd.payload import PayloadError, TokenPayload, holds_token
from syncd.stores.base import (
    FatalStoreError,
    Finding,
    StoreError,
    ThreadedStore,
    TransientStoreError,
    WriteResult,
)

if TYPE_CHECKING:
    from syncd.config import StoreConfig, TargetConfig, VaultStoreConfig

T = TypeVar("T")
log = logs.get_logger("syncd.stores.vault")

CAS_ATTEMPTS = 3  # conflicts in a row before giving up for this run (the engine retries with backoff)
METADATA_FIELDS = ("credential", "expires_at", "issued_at", "refresh_after", "fingerprint", "token_type", "scope")
METADATA_VALUE_MAX = 512  # KV v2 refuses longer custom_metadata values
RENEW_CAPPED_RATIO = 0.9  # a renewal granting less than this of what was asked has hit the max TTL
RENEWER_MIN_SLEEP = 0.5
RENEWER_MAX_SLEEP = 5.0  # re-evaluate at least this often (a login elsewhere may have changed the lease)
DEFAULT_K8S_JWT = "/var/run/secrets/kubernetes.io/serviceaccount/token"

_STATUS_BY_CLASS: dict[type[BaseException], int] = {
    hvac.exceptions.InvalidRequest: 400,
    hvac.exceptions.Unauthorized: 401,
    hvac.exceptions.Forbidden: 403,
    hvac.exceptions.InvalidPath: 404,
    hvac.exceptions.PreconditionFailed: 412,
    hvac.exceptions.RateLimitExceeded: 429,
    hvac.exceptions.InternalServerError: 500,
    hvac.exceptions.VaultNotInitialized: 501,
    hvac.exceptions.BadGateway: 502,
    hvac.exceptions.VaultDown: 503,
}


# --------------------------------------------------------------------------- hvac plumbing


class _Adapter(hvac.adapters.JSONAdapter):  # type: ignore[misc]
    """hvac's JSON adapter that also records the HTTP status and Retry-After on the error it raises.

    hvac maps a few statuses to exception classes and folds the rest (504, 408, 409...)
    into ``UnexpectedError``; classification needs the real number.
    """

    def _raise_for_error(self, method: str, url: str, response: requests.Response) -> None:
        try:
            super()._raise_for_error(method, url, response)
        except hvac.exceptions.VaultError as exc:
            exc.status_code = response.status_code
            exc.retry_after = response.headers.get("Retry-After")
            raise


def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    if isinstance(code, int):
        return code
    return _STATUS_BY_CLASS.get(type(exc))


def _vault_messages(exc: BaseException) -> str:
    """Vault's own error (and warning) strings, de-noised and scrubbed, for messages."""
    parts: list[str] = []
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list | tuple):
        parts.extend(str(e) for e in errors)
    body = getattr(exc, "json", None)
    if isinstance(body, dict) and isinstance(body.get("warnings"), list):
        parts.extend(str(w) for w in body["warnings"])
    if not parts:
        text = getattr(exc, "text", None)
        if isinstance(text, str) and text.strip() and not text.lstrip().startswith("{"):
            parts.append(logs.shorten(text.strip(), 200))
    cleaned = []
    for part in parts:
        text = part.replace("1 error occurred:", "").replace("\n", " ").replace("\t", " ").replace("*", " ")
        text = " ".join(text.split())
        if text:
            cleaned.append(text)
    joined = "; ".join(cleaned) or "no error text"
    return logs.shorten(joined, 400)


def _retry_after(exc: BaseException) -> float | None:
    value = getattr(exc, "retry_after", None)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def _is_cas_mismatch(exc: BaseException) -> bool:
    return _status(exc) == 400 and "check-and-set parameter did not match" in _vault_messages(exc)


def _is_denial(exc: BaseException) -> bool:
    """403/401, or a 400 whose text is a permission error (some plugins answer that way)."""
    status = _status(exc)
    if status in (401, 403):
        return True
    return status == 400 and "permission denied" in _vault_messages(exc).lower()


def is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- classification


@dataclass(frozen=True)
class Op:
    """One Vault request, as error messages describe it."""

    action: str  # "write", "read", "write metadata of", "log in at", "renew the token at", ...
    path: str  # API path without /v1, e.g. "secret/data/vgs/calm" (what policies name)
    capabilities: tuple[str, ...] = ()
    login_method: str | None = None  # set for login requests


@dataclass(frozen=True)
class Context:
    """What a message needs to tell the operator where to look."""

    store: str
    url: str
    mount: str
    kv_version: int
    namespace: str | None = None
    timeout: float = 10.0

    @property
    def where(self) -> str:
        # The address as messages show it: a url with user:password@ keeps only ***@.
        return logs.scrub_url(self.url) + (f" (namespace {self.namespace})" if self.namespace else "")


def _caps(caps: tuple[str, ...]) -> str:
    return ", ".join(f'"{c}"' for c in caps)


def denied_message(op: Op, ctx: Context, status: int | None, vault_says: str) -> str:
    """Name the policy path and the capability a denied request needs. Never includes a token."""
    need = " and ".join(f'"{c}"' for c in op.capabilities) or "access"
    stanza = f'path "{op.path}" {{ capabilities = [{_caps(op.capabilities)}] }}' if op.capabilities else ""
    text = (
        f"store {ctx.store!r}: Vault at {ctx.where} denied {op.action} {op.path} (HTTP {status or '?'}: {vault_says}). "
        f"The token's policy needs {need} on {op.path}"
    )
    if stanza:
        text += f": {stanza}"
    return text + ". See docs/vault.md for the complete syncd policy."


def classify_error(exc: BaseException, op: Op, ctx: Context) -> StoreError:
    """Turn an hvac/requests error into a transient or fatal StoreError with an actionable message.

    Transient: connection errors, timeouts, 408/412/429/5xx, a sealed or standby server.
    Fatal: denials, missing mounts, bad requests, TLS verification failures.
    """
    prefix = f"store {ctx.store!r}"
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, requests.exceptions.SSLError):
        text = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text.lower():
            return FatalStoreError(
                f"{prefix}: TLS verification of {ctx.where} failed while trying to {op.action} {op.path}: "
                "set ca_cert to the CA bundle that signed Vault's certificate",
                code="tls",
            )
        return TransientStoreError(
            f"{prefix}: TLS handshake with {ctx.where} failed ({type(exc).__name__}) while trying to "
            f"{op.action} {op.path}; retrying",
            code="tls",
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.ConnectionError):
        return TransientStoreError(
            f"{prefix}: cannot reach Vault at {ctx.where} to {op.action} {op.path} ({type(exc).__name__}): "
            "it is down, restarting or unreachable; retrying with backoff",
            code="connection",
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return TransientStoreError(
            f"{prefix}: Vault at {ctx.where} did not answer within {ctx.timeout:g}s to {op.action} {op.path}; "
            "retrying (raise the store's timeout if Vault is just slow)",
            code="timeout",
        )
    if isinstance(exc, requests.exceptions.RequestException):
        return TransientStoreError(
            f"{prefix}: HTTP error talking to Vault at {ctx.where} ({type(exc).__name__}) while trying to "
            f"{op.action} {op.path}; retrying",
            code="http",
        )
    if not isinstance(exc, hvac.exceptions.VaultError):
        return TransientStoreError(
            f"{prefix}: unexpected {type(exc).__name__} while trying to {op.action} {op.path}: "
            f"{logs.shorten(str(exc), 300)}",
            code="unexpected",
        )
    status = _status(exc)
    says = _vault_messages(exc)
    low = says.lower()
    code = str(status) if status is not None else type(exc).__name__
    if status == 503 and "sealed" in low:
        return TransientStoreError(
            f"{prefix}: Vault at {ctx.where} is sealed; {op.action} {op.path} will succeed once it is unsealed",
            code="sealed",
        )
    if status in (429, 473) or (status == 503 and "standby" in low):
        what = "is a standby node" if status in (473, 503) else "is rate limiting (429)"
        return TransientStoreError(
            f"{prefix}: Vault at {ctx.where} {what} and refused to {op.action} {op.path}: {says}; retrying",
            code=code,
            retry_after=_retry_after(exc),
        )
    if status is not None and (status >= 500 or status in (408, 412)):
        return TransientStoreError(
            f"{prefix}: Vault at {ctx.where} answered {status} to {op.action} {op.path}: {says}; retrying",
            code=code,
            retry_after=_retry_after(exc),
        )
    if op.login_method is not None:
        return _login_error(exc, op, ctx, status, says)
    if _is_denial(exc):
        return FatalStoreError(denied_message(op, ctx, status, says), code=code)
    if status == 404 and "no handler for route" in low:
        return FatalStoreError(
            f"{prefix}: no KV secrets engine is mounted at '{ctx.mount}/' on {ctx.where} ({op.action} {op.path}): "
            f"enable it with `bao secrets enable -path={ctx.mount} -version={ctx.kv_version} kv` "
            "(or `vault secrets enable ...`), or fix the store's mount",
            code="mount_not_found",
        )
    if status == 404 and "versioned k/v" in low:
        return FatalStoreError(
            f"{prefix}: '{ctx.mount}/' is a KV version 2 mount but the store has kv_version = 1: set kv_version = 2",
            code="kv_version",
        )
    if status == 400:
        return FatalStoreError(
            f"{prefix}: Vault at {ctx.where} refused to {op.action} {op.path} (HTTP 400): {says}", code=code
        )
    if status is not None and 400 <= status < 500:
        return FatalStoreError(
            f"{prefix}: Vault at {ctx.where} answered {status} to {op.action} {op.path}: {says}", code=code
        )
    return TransientStoreError(
        f"{prefix}: Vault at {ctx.where} answered {status or '?'} to {op.action} {op.path}: {says}; retrying",
        code=code,
        retry_after=_retry_after(exc),
    )


def _login_error(exc: BaseException, op: Op, ctx: Context, status: int | None, says: str) -> StoreError:
    method = op.login_method or "?"
    mount = op.path.removeprefix("auth/").removesuffix("/login")
    prefix = f"store {ctx.store!r}: {method} login at {op.path} on {ctx.where}"
    code = f"login_{status}" if status is not None else "login"
    if status == 404 or "no handler for route" in says.lower():
        return FatalStoreError(
            f"{prefix} failed: no auth method is enabled at auth/{mount}/: enable it "
            f"(`bao auth enable -path={mount} {method}`) or fix auth.mount",
            code=code,
        )
    hints = {
        "approle": "check role_id and secret_id; a secret_id can expire (secret_id_ttl) or run out of uses "
        "(secret_id_num_uses: every re-login uses one)",
        "kubernetes": "check that the role exists and binds this pod's service account name and namespace "
        "(bound_service_account_names / bound_service_account_namespaces), and that the JWT file is the pod's token",
        "jwt": "check that the role exists, that its bound_audiences/bound_subject/bound_claims match the JWT, "
        "and that the JWT has not expired",
    }
    hint = hints.get(method, "check the auth configuration")
    return FatalStoreError(f"{prefix} was refused (HTTP {status or '?'}: {says}): {hint}", code=code)


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class Lease:
    """What the store knows about its own Vault token. Times are ``clock()`` (monotonic) seconds.

    Replaced as a whole (never mutated), so a thread reading it without the lock
    sees one consistent snapshot.
    """

    generation: int = 0  # bumps at every login; 0 = not logged in yet
    expires: float | None = None  # None: no TTL (root or ttl 0) or not known
    ttl: float = 0.0  # granted at the last login/renewal
    creation_ttl: float = 0.0  # granted at login: what each renewal asks for
    renewable: bool = False
    capped: bool = False  # a renewal no longer extends it (max TTL reached)
    retry_at: float | None = None  # a renewal failed transiently: not before this (no request storm)


@dataclass
class PathState:
    """Per KV path: the version for the next ``cas``, and what this process wrote there."""

    version: int | None = None  # None: unknown, read before writing
    written_fingerprint: str | None = None
    metadata_fingerprint: str | None = None
    exists: bool | None = None


class _Denied(Exception):
    """A request was denied (403/401): the caller may log in again and retry once."""

    def __init__(self, op: Op, error: StoreError) -> None:
        super().__init__(error.message)
        self.op = op
        self.error = error


class _CasMismatch(Exception):
    """The ``cas`` we sent is not the path's current version: another writer was there."""


@dataclass(frozen=True)
class _Stored:
    version: int  # current version (0: the path does not exist)
    payload: TokenPayload | None
    problem: StoreError | None = None  # the value is there but is not a payload we can use
    metadata_fingerprint: str | None = None  # what the path's custom_metadata says it holds


Decision = Literal["write", "same", "adopt"]


def resolve_conflict(stored: TokenPayload | None, ours: TokenPayload) -> Decision:
    """What to do when a path holds ``stored`` and we want to write ``ours`` (pure; table-tested).

    ``adopt`` only a token of the same credential that outlives ours: another daemon
    refreshed it, and overwriting it would shorten what consumers hold. The same token
    with an earlier expiry is not ``same``: a caching IdP re-issued it with a later one,
    and consumers read the expiry from the path.
    """
    if stored is None:
        return "write"
    if holds_token(stored.fingerprint, stored.expires_at, ours):
        return "same"
    if stored.credential == ours.credential and stored.expires_at > ours.expires_at:
        return "adopt"
    return "write"


def custom_metadata_for(payload: TokenPayload) -> dict[str, str]:
    """The path's custom_metadata: the public fields, as KV v2 wants them (non-empty strings, <= 512 bytes)."""
    pub = payload.public_dict()
    out: dict[str, str] = {}
    for key in METADATA_FIELDS:
        value = pub.get(key)
        if value is None or value == "":
            continue
        text = str(value)
        if len(text.encode()) > METADATA_VALUE_MAX:
            continue  # only a very long scope can be; the data document still carries it (json format)
        out[key] = text
    return out


def data_document(payload: TokenPayload, fmt: str, kv_version: int) -> dict[str, Any]:
    """The KV data for a payload (see the module docstring for why v1 raw keeps the public fields)."""
    if fmt == "raw" and kv_version == 2:
        return {"access_token": payload.access_token.get_secret_value()}
    return payload.to_dict()


def payload_from_kv(data: Any, metadata: Any, *, source: str) -> TokenPayload:
    """Rebuild a payload from KV data (+ v2 custom_metadata for raw); raises PayloadError."""
    if not isinstance(data, dict):
        raise PayloadError(f"{source}: no data (expected a syncd payload)")
    token = data.get("access_token")
    if isinstance(token, str) and "expires_at" not in data and isinstance(metadata, dict) and metadata:
        doc: dict[str, Any] = {k: v for k, v in metadata.items() if k in METADATA_FIELDS}
        return TokenPayload.from_metadata(token, doc, source=source)
    if isinstance(token, str) and "expires_at" not in data:
        raise PayloadError(f"{source}: a bare access_token without custom_metadata (cannot tell when it expires)")
    return TokenPayload.from_dict(data, source=source)


# --------------------------------------------------------------------------- the store


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
            adapter=_Adapter,
            namespace=config.namespace,
        )
        self._auth_lock = threading.Lock()
        self._lease = Lease()
        self._old_tokens: list[str] = []
        self._paths: dict[str, PathState] = {}
        self._mount_checked = False
        self._warned_static = False
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
        return f"{self.mount}/data/{key}" if self.kv_version == 2 else f"{self.mount}/{key}"

    def metadata_path(self, key: str) -> str:
        return f"{self.mount}/metadata/{key}"

    def _path_state(self, key: str) -> PathState:
        state = self._paths.get(key)
        if state is None:
            state = self._paths.setdefault(key, PathState())
        return state

    # ------------------------------------------------------------------ requests

    def _translate(self, exc: BaseException, op: Op) -> Exception:
        """The exception to raise for a failed request: ``_CasMismatch``, ``_Denied`` or a StoreError."""
        if isinstance(exc, hvac.exceptions.VaultError):
            if _is_cas_mismatch(exc):
                return _CasMismatch()
            err = classify_error(exc, op, self._ctx)
            if op.login_method is None and _is_denial(exc):
                return _Denied(op, err)
            return err
        return classify_error(exc, op, self._ctx)

    def _call(self, op: Op, fn: Callable[[], T]) -> T:
        """One Vault request. Denials become ``_Denied`` (the caller may log in again), the rest StoreErrors."""
        try:
            return fn()
        except (
            hvac.exceptions.VaultError,
            requests.exceptions.RequestException,
            ValueError,
            KeyError,
            TypeError,
        ) as exc:
            raise self._translate(exc, op) from None

    def _authed(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` with a live token; on a denial log in again and run it once more.

        A denial after a fresh login is fatal, and the message says whether the token
        itself is valid (then the policy lacks the capability) or was rejected.
        """
        self._ensure_token()
        generation = self._lease.generation
        try:
            return fn()
        except _Denied as denied:
            log.info(
                "vault_denied",
                store=self.name,
                path=denied.op.path,
                action="log in again and retry once",
            )
            self._relogin(generation, reason="permission_denied")
        try:
            return fn()
        except _Denied as denied:
            err = denied.error
            raise FatalStoreError(err.message + self._explain_token(), code=err.code) from None

    def _explain_token(self) -> str:
        """After a second denial: is the token valid (policy problem) or dead (auth problem)? Best effort."""
        try:
            data = self._client.auth.token.lookup_self()["data"]
        except hvac.exceptions.VaultError as exc:
            if _is_denial(exc):
                return (
                    " Vault also refuses the token's own lookup-self: the token is invalid, expired or revoked "
                    "even after a fresh login (or its policies lack the default policy)."
                )
            return ""
        except Exception:
            return ""
        policies = data.get("policies") if isinstance(data, dict) else None
        if isinstance(policies, list):
            return f" The token is valid (policies: {', '.join(str(p) for p in policies) or 'none'})."
        return ""

    # ------------------------------------------------------------------ own token

    def _due_at(self, lease: Lease) -> float | None:
        """When to renew (or log in again): ``renew_before`` ahead of expiry, at most half the TTL ahead.

        Half the TTL keeps short-lived tokens (seconds, in tests; minutes, with a small token_ttl)
        from being renewed on every request when renew_before is larger than the TTL itself.
        """
        if lease.expires is None:
            return None
        margin = min(self.config.renew_before, max(lease.creation_ttl, lease.ttl) / 2)
        due = lease.expires - margin
        if lease.retry_at is not None:
            due = max(due, min(lease.retry_at, lease.expires))
        return due

    def _ensure_token(self) -> None:
        """Log in the first time; renew or log in again when due. No I/O when nothing is due."""
        lease = self._lease
        due = self._due_at(lease)
        if lease.generation and (due is None or self._clock() < due):
            return
        with self._auth_lock:
            lease = self._lease
            now = self._clock()
            due = self._due_at(lease)
            if lease.generation and (due is None or now < due):
                return  # another thread did it while we waited
            if not lease.generation:
                self._login("start")
            elif lease.expires is not None and now >= lease.expires:
                self._login("expired")
            elif lease.renewable and not lease.capped:
                self._renew()
            else:
                self._login("max_ttl" if lease.capped else "not_renewable")

    def _relogin(self, seen_generation: int, *, reason: str) -> None:
        with self._auth_lock:
            if self._lease.generation != seen_generation:
                return  # another thread already logged in again after the same denial
            self._login(reason)

    def _set_token(self, token: str) -> None:
        logs.register_secret(token)
        current = self._client.adapter.token
        if current and current != token:
            self._old_tokens.append(current)
            # Keep redacting the previous token a while (a slow request may still log it).
            while len(self._old_tokens) > 2:
                logs.forget_secret(self._old_tokens.pop(0))
        self._client.adapter.token = token

    def _login(self, reason: str) -> None:
        """Obtain a token by the configured method. Caller holds ``_auth_lock``."""
        from syncd.config import SecretUnavailableError, VaultAppRoleAuth, VaultJwtAuth, VaultKubernetesAuth

        auth = self.config.auth
        method = auth.method
        if method == "token":
            self._login_token(reason)
            return
        op = Op("log in at", f"auth/{getattr(auth, 'mount', method)}/login", ("update",), login_method=method)
        sent = self._clock()
        try:
            if isinstance(auth, VaultAppRoleAuth):
                role_id = auth.role_id.get().get_secret_value()
                secret_id = auth.secret_id.get().get_secret_value()
                logs.register_secret(role_id)
                logs.register_secret(secret_id)
                login = functools.partial(
                    self._client.auth.approle.login,
                    role_id=role_id,
                    secret_id=secret_id,
                    use_token=False,
                    mount_point=auth.mount,
                )
            elif isinstance(auth, VaultKubernetesAuth):
                login = functools.partial(
                    self._client.auth.kubernetes.login,
                    role=auth.role,
                    jwt=self._read_jwt(auth.jwt_file, method),
                    use_token=False,
                    mount_point=auth.mount,
                )
            elif isinstance(auth, VaultJwtAuth):
                login = functools.partial(
                    self._client.auth.jwt.jwt_login,
                    role=auth.role,
                    jwt=self._read_jwt(auth.jwt_file, method),
                    use_token=False,
                    path=auth.mount,
                )
            else:  # pragma: no cover - the config union has no other member
                raise FatalStoreError(f"store {self.name!r}: unknown auth method {method!r}", code="auth")
        except SecretUnavailableError as exc:
            raise FatalStoreError(
                f"store {self.name!r}: cannot log in to Vault ({method}): {exc}", code="auth"
            ) from None
        resp = self._call(op, login)
        info = resp.get("auth") if isinstance(resp, dict) else None
        token = info.get("client_token") if isinstance(info, dict) else None
        if not isinstance(info, dict) or not isinstance(token, str) or not token:
            raise TransientStoreError(
                f"store {self.name!r}: the {method} login at {op.path} returned no client token", code="login"
            )
        self._set_token(token)
        ttl = float(info.get("lease_duration") or 0)
        renewable = bool(info.get("renewable"))
        self._lease = Lease(
            generation=self._lease.generation + 1,
            expires=sent + ttl if ttl > 0 else None,
            ttl=ttl,
            creation_ttl=ttl,
            renewable=renewable,
        )
        log.info(
            "vault_login",
            store=self.name,
            method=method,
            reason=reason,
            ttl=ttl,
            renewable=renewable,
            policies=info.get("policies"),
        )

    def _read_jwt(self, path: Path, method: str) -> str:
        try:
            jwt = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            where = " (is syncd running in a Kubernetes pod with its service account token mounted?)"
            raise FatalStoreError(
                f"store {self.name!r}: the JWT file {path} for {method} login does not exist"
                + (where if method == "kubernetes" else ""),
                code="auth",
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise FatalStoreError(
                f"store {self.name!r}: cannot read the JWT file {path} for {method} login ({type(exc).__name__})",
                code="auth",
            ) from None
        if not jwt:
            raise FatalStoreError(f"store {self.name!r}: the JWT file {path} is empty", code="auth")
        logs.register_secret(jwt)
        return jwt

    def _read_static_token(self) -> str:
        auth = self.config.auth
        assert auth.method == "token"
        if auth.token_file is not None:
            try:
                token = auth.token_file.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                raise FatalStoreError(
                    f"store {self.name!r}: the Vault token file {auth.token_file} does not exist", code="auth"
                ) from None
            except (OSError, UnicodeDecodeError) as exc:
                raise FatalStoreError(
                    f"store {self.name!r}: cannot read the Vault token file {auth.token_file} "
                    f"({type(exc).__name__}): fix its permissions",
                    code="auth",
                ) from None
            if not token:
                raise FatalStoreError(
                    f"store {self.name!r}: the Vault token file {auth.token_file} is empty", code="auth"
                )
            return token
        token = os.environ.get(auth.token_env, "").strip()
        if not token:
            raise FatalStoreError(
                f"store {self.name!r}: no Vault token: set the environment variable {auth.token_env} "
                "or auth.token_file (or use approle / kubernetes / jwt auth)",
                code="auth",
            )
        return token

    def _login_token(self, reason: str) -> None:
        """``token`` auth: (re-)read the token, then learn its TTL with lookup-self."""
        token = self._read_static_token()
        same = token == self._client.adapter.token
        if same and reason in ("max_ttl", "not_renewable", "expired"):
            # Nothing new in the file: stop proactive handling; a 403 later re-reads it again.
            lease = self._lease
            if not self._warned_static:
                self._warned_static = True
                log.warning(
                    "vault_token_not_extendable",
                    store=self.name,
                    source=self._token_source(),
                    reason=reason,
                    fix="write a new token to the source before this one expires, or use approle/kubernetes/jwt auth",
                )
            self._lease = replace(lease, expires=None)
            return
        self._set_token(token)
        self._warned_static = False
        sent = self._clock()
        op = Op("look up its own token at", "auth/token/lookup-self", ("read",))
        try:
            resp = self._call(op, self._client.auth.token.lookup_self)
        except _Denied:
            # An invalid token, or one without the default policy: we cannot tell. Use it as is;
            # a denied write re-reads the source and then fails with a message naming both causes.
            self._lease = Lease(generation=self._lease.generation + 1)
            log.warning(
                "vault_token_lookup_denied",
                store=self.name,
                source=self._token_source(),
                consequence="TTL unknown: no renewal; the token is used until Vault refuses it",
            )
            return
        data = resp.get("data") if isinstance(resp, dict) else None
        data = data if isinstance(data, dict) else {}
        ttl = float(data.get("ttl") or 0)
        creation_ttl = float(data.get("creation_ttl") or ttl)
        self._lease = Lease(
            generation=self._lease.generation + 1,
            expires=sent + ttl if ttl > 0 else None,
            ttl=ttl,
            creation_ttl=creation_ttl,
            renewable=bool(data.get("renewable")),
        )
        log.info(
            "vault_login",
            store=self.name,
            method="token",
            reason=reason,
            source=self._token_source(),
            ttl=ttl,
            renewable=bool(data.get("renewable")),
            policies=data.get("policies"),
        )

    def _token_source(self) -> str:
        auth = self.config.auth
        if auth.method != "token":
            return auth.method
        return f"file {auth.token_file}" if auth.token_file else f"env {auth.token_env}"

    def _renew(self) -> None:
        """renew-self; log in instead when Vault will not extend the token. Caller holds ``_auth_lock``."""
        lease = self._lease
        increment = max(round(lease.creation_ttl), 1)
        op = Op("renew its own token at", "auth/token/renew-self", ("update",))
        sent = self._clock()
        try:
            resp = self._call(op, lambda: self._client.auth.token.renew_self(increment=f"{increment}s"))
        except _Denied:
            self._login("renew_denied")
            return
        except StoreError as exc:
            if not exc.transient:  # e.g. 400 "lease is not renewable"
                self._login("renew_refused")
                return
            if lease.expires is not None and sent < lease.expires:
                left = lease.expires - sent
                retry_in = min(max(left / 4, 1.0), 30.0)
                self._lease = replace(lease, retry_at=sent + retry_in)
                log.warning(
                    "vault_token_renew_failed",
                    store=self.name,
                    remaining=round(left, 3),
                    retry_in=round(retry_in, 3),
                    action="using the current token while it lasts",
                    **logs.error_fields(exc),
                )
                return
            raise
        info = resp.get("auth") if isinstance(resp, dict) else None
        if not isinstance(info, dict):
            raise TransientStoreError(f"store {self.name!r}: renew-self returned no auth data", code="renew")
        ttl = float(info.get("lease_duration") or 0)
        warnings = resp.get("warnings") or []
        capped = ttl < increment * RENEW_CAPPED_RATIO or any("max_ttl" in str(w) for w in warnings)
        self._lease = replace(
            lease,
            expires=sent + ttl if ttl > 0 else None,
            ttl=ttl,
            renewable=bool(info.get("renewable", lease.renewable)),
            capped=capped,
            retry_at=None,
        )
        log.info("vault_token_renewed", store=self.name, ttl=ttl, requested=increment, capped=capped)
        due = self._due_at(self._lease)
        if capped and due is not None and self._clock() >= due:
            self._login("max_ttl")  # what is left is within renew_before already

    def _seconds_until_due(self) -> float | None:
        due = self._due_at(self._lease)
        return None if due is None else due - self._clock()

    async def _renew_loop(self) -> None:
        """Keep the token alive between writes that are further apart than its TTL.

        It only sleeps and looks at the lease (no I/O) until renewal is due, then runs the
        same ``_ensure_token`` as the write path, so both agree on what is due.
        """
        failures = 0
        while not self._closed:
            left = self._seconds_until_due()
            if left is None or left > 0:
                # Not logged in yet (the first request is doing it): look again soon.
                idle = RENEWER_MAX_SLEEP if self._lease.generation else RENEWER_MIN_SLEEP
                await asyncio.sleep(idle if left is None else min(left, RENEWER_MAX_SLEEP))
                continue
            try:
                await self._run(self._ensure_token)
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

    # ------------------------------------------------------------------ mount check

    def _check_mount(self, key: str) -> None:
        """Once per store: is ``mount`` a KV mount of the configured version? (sys/internal/ui/mounts)

        A KV v2 write sent to a v1 mount would silently store ``{"data": ..., "options": ...}`` at
        ``<mount>/data/<key>``; this catches the mismatch before the first write. Best effort:
        a token without access to this endpoint just skips the check.
        """
        if self._mount_checked:
            return
        try:
            resp = self._client.adapter.get(f"/v1/sys/internal/ui/mounts/{self.mount}/{key}")
        except hvac.exceptions.VaultError:
            self._mount_checked = True  # not allowed or not there: the real request will say what is wrong
            return
        except (requests.exceptions.RequestException, ValueError):
            return  # try again with the next request
        data = resp.get("data") if isinstance(resp, dict) else None
        if not isinstance(data, dict):
            return
        self._mount_checked = True
        path = str(data.get("path") or "").strip("/")
        kind = str(data.get("type") or "")
        options = data.get("options") if isinstance(data.get("options"), dict) else {}
        version = str((options or {}).get("version") or "1")
        if path and path != self.mount:
            raise FatalStoreError(
                f"store {self.name!r}: '{self.mount}' is not a mount point; the secrets engine for it is mounted at "
                f"'{path}/': set mount = \"{path}\" and put the rest in the key",
                code="mount",
            )
        if kind and kind not in ("kv", "generic"):
            raise FatalStoreError(
                f"store {self.name!r}: '{self.mount}/' is a {kind!r} secrets engine, not KV", code="mount"
            )
        if kind and version != str(self.kv_version):
            raise FatalStoreError(
                f"store {self.name!r}: '{self.mount}/' is a KV version {version} mount but the store has "
                f"kv_version = {self.kv_version}: set kv_version = {version}",
                code="kv_version",
            )

    # ------------------------------------------------------------------ KV v2

    def _stored_from(self, resp: Any, state: PathState, source: str) -> _Stored:
        outer = resp.get("data") if isinstance(resp, dict) else None
        outer = outer if isinstance(outer, dict) else {}
        meta = outer.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        version = int(meta.get("version") or 0)
        custom = meta.get("custom_metadata") if isinstance(meta.get("custom_metadata"), dict) else None
        meta_fp = str(custom["fingerprint"]) if custom and custom.get("fingerprint") else None
        state.version = version
        state.exists = version > 0
        data = outer.get("data")
        if data is None or meta.get("deletion_time") or meta.get("destroyed"):
            return _Stored(version, None, metadata_fingerprint=meta_fp)
        try:
            payload = payload_from_kv(data, custom, source=source)
        except PayloadError as exc:
            return _Stored(version, None, self._payload_problem(exc), metadata_fingerprint=meta_fp)
        logs.register_secret(payload.access_token.get_secret_value())
        return _Stored(version, payload, metadata_fingerprint=meta_fp)

    def _payload_problem(self, exc: PayloadError) -> StoreError:
        text = str(exc)
        if "fingerprint does not match" in text:
            return TransientStoreError(
                f"{text}: custom_metadata describes another token (a write was interrupted between the data and "
                "metadata requests, or two writers raced); the next rotation rewrites both",
                code="metadata_stale",
            )
        return FatalStoreError(text, code="payload")

    def _lookup_v2(self, key: str, state: PathState) -> _Stored:
        """Read the current version; a missing path is version 0, a deleted latest version keeps its number."""
        path = self.data_path(key)
        op = Op("read", path, ("read",))
        try:
            resp = self._client.secrets.kv.v2.read_secret_version(
                path=key, mount_point=self.mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.VaultError as exc:
            if _status(exc) == 404 and "no handler for route" not in _vault_messages(exc).lower():
                body = getattr(exc, "json", None)
                if isinstance(body, dict) and isinstance(body.get("data"), dict):
                    return self._stored_from(body, state, f"vault {path}")  # deleted latest version
                state.version, state.exists = 0, False
                return _Stored(0, None)
            raise self._translate(exc, op) from None
        except (requests.exceptions.RequestException, ValueError) as exc:
            raise self._translate(exc, op) from None
        return self._stored_from(resp, state, f"vault {path}")

    def _write_metadata(self, key: str, payload: TokenPayload, state: PathState) -> None:
        path = self.metadata_path(key)
        op = Op("write metadata of", path, ("update",) if state.exists else ("create", "update"))
        body = {"max_versions": self.config.max_versions, "custom_metadata": custom_metadata_for(payload)}
        # Not hvac's update_metadata: it always sends delete_version_after="0s", which would clear an
        # operator's per-path setting at every rotation. Only the two fields syncd owns are sent.
        url = hvac.utils.format_url("/v1/{mount}/metadata/{path}", mount=self.mount, path=key)
        self._call(op, lambda: self._client.adapter.post(url, json=body))
        state.metadata_fingerprint = payload.fingerprint

    def _write_v2(self, key: str, payload: TokenPayload, fmt: str) -> WriteResult:
        state = self._path_state(key)
        location = self.data_path(key)
        if (
            state.written_fingerprint == payload.fingerprint
            and state.version is not None
            and state.metadata_fingerprint != payload.fingerprint
        ):
            # The data of this very token went in; its metadata write failed: finish just that
            # (writing the data again would add an identical version).
            self._write_metadata(key, payload, state)
            return WriteResult(written=True, version=str(state.version), location=location)
        doc = data_document(payload, fmt, 2)
        for attempt in range(1, CAS_ATTEMPTS + 1):
            if state.version is None:
                stored = self._lookup_v2(key, state)
                decision = resolve_conflict(stored.payload, payload)
                if attempt > 1 or decision != "write":
                    log.info(
                        "vault_cas_resolved",
                        store=self.name,
                        path=location,
                        version=stored.version,
                        decision=decision,
                        stored_fingerprint=stored.payload.fingerprint if stored.payload else None,
                        stored_problem=stored.problem.code if stored.problem else None,
                    )
                if decision == "adopt":
                    assert stored.payload is not None
                    return WriteResult(
                        written=False, version=str(stored.version), location=location, adopted=stored.payload
                    )
                if decision == "same":
                    # Already there (a retried request whose answer was lost, or a second pass):
                    # make sure the metadata describes it too, then report "skipped".
                    state.written_fingerprint = payload.fingerprint
                    if stored.metadata_fingerprint != payload.fingerprint:
                        self._write_metadata(key, payload, state)
                    else:
                        state.metadata_fingerprint = payload.fingerprint
                    return WriteResult(written=False, version=str(stored.version), location=location)
            cas = state.version or 0
            op = Op("write", location, ("update",) if cas > 0 else ("create",))
            send = functools.partial(
                self._client.secrets.kv.v2.create_or_update_secret,
                path=key,
                secret=doc,
                cas=cas,
                mount_point=self.mount,
            )
            try:
                resp = self._call(op, send)
            except _CasMismatch:
                log.info("vault_cas_conflict", store=self.name, path=location, cas=cas, attempt=attempt)
                state.version = None
                continue
            data = resp.get("data") if isinstance(resp, dict) else None
            version = int(data.get("version") or 0) if isinstance(data, dict) else 0
            if version <= 0:
                # Not Vault's answer (a proxy's page?): do not report a write nobody confirmed.
                state.version = None
                raise TransientStoreError(
                    f"store {self.name!r}: the write of {location} got an answer without a KV version "
                    f"from {self._ctx.where} (is something other than Vault answering at that address?)",
                    code="bad_response",
                )
            state.version = version
            state.exists = True
            state.written_fingerprint = payload.fingerprint
            state.metadata_fingerprint = None
            self._write_metadata(key, payload, state)
            return WriteResult(written=True, version=str(version), location=location)
        raise TransientStoreError(
            f"store {self.name!r}: {CAS_ATTEMPTS} check-and-set conflicts in a row on {location}: another writer "
            "keeps changing it; retrying with backoff",
            code="cas_conflict",
        )

    # ------------------------------------------------------------------ KV v1

    def _write_v1(self, key: str, payload: TokenPayload, fmt: str) -> WriteResult:
        state = self._path_state(key)
        location = self.data_path(key)
        caps = ("update",) if state.exists else ("create", "update")
        op = Op("write", location, caps)
        doc = data_document(payload, fmt, 1)
        # method="PUT": without it hvac reads the path first to choose POST or PUT (an extra request
        # that also needs `read`); Vault treats both alike and decides create/update itself.
        self._call(
            op,
            lambda: self._client.secrets.kv.v1.create_or_update_secret(
                path=key, secret=doc, method="PUT", mount_point=self.mount
            ),
        )
        state.exists = True
        state.written_fingerprint = payload.fingerprint
        return WriteResult(written=True, location=location)

    def _read_v1(self, key: str) -> TokenPayload | None:
        path = self.data_path(key)
        op = Op("read", path, ("read",))
        try:
            resp = self._client.secrets.kv.v1.read_secret(path=key, mount_point=self.mount)
        except hvac.exceptions.VaultError as exc:
            says = _vault_messages(exc).lower()
            if _status(exc) == 404 and "no handler for route" not in says and "versioned k/v" not in says:
                self._path_state(key).exists = False
                return None
            raise self._translate(exc, op) from None
        except (requests.exceptions.RequestException, ValueError) as exc:
            raise self._translate(exc, op) from None
        self._path_state(key).exists = True
        data = resp.get("data") if isinstance(resp, dict) else None
        try:
            payload = payload_from_kv(data, None, source=f"vault {path}")
        except PayloadError as exc:
            raise self._payload_problem(exc) from None
        logs.register_secret(payload.access_token.get_secret_value())
        return payload

    # ------------------------------------------------------------------ sync entry points

    def _write_sync(self, key: str, payload: TokenPayload, fmt: str) -> WriteResult:
        def attempt() -> WriteResult:
            self._check_mount(key)
            if self.kv_version == 2:
                return self._write_v2(key, payload, fmt)
            return self._write_v1(key, payload, fmt)

        return self._guarded(lambda: self._authed(attempt))

    def _read_sync(self, key: str) -> TokenPayload | None:
        def attempt() -> TokenPayload | None:
            self._check_mount(key)
            if self.kv_version == 1:
                return self._read_v1(key)
            stored = self._lookup_v2(key, self._path_state(key))
            if stored.problem is not None:
                raise stored.problem
            return stored.payload

        return self._guarded(lambda: self._authed(attempt))

    def _guarded(self, fn: Callable[[], T]) -> T:
        """Last line: nothing but a StoreError leaves the store, and never with a secret in it."""
        try:
            return fn()
        except StoreError:
            raise
        except _Denied as denied:  # pragma: no cover - _authed converts these
            raise FatalStoreError(denied.error.message, code=denied.error.code) from None
        except Exception as exc:
            raise classify_error(exc, Op("use", self.mount), self._ctx) from None

    # ------------------------------------------------------------------ Store interface

    async def write(self, key: str, payload: TokenPayload, *, target: TargetConfig | None = None) -> WriteResult:
        key = self.check_key(key)
        fmt = target.format if target else "json"
        self._start_renewer()
        return await self._run(self._write_sync, key, payload, fmt)

    async def read(self, key: str, *, target: TargetConfig | None = None) -> TokenPayload | None:
        key = self.check_key(key)
        self._start_renewer()
        return await self._run(self._read_sync, key)

    async def aclose(self) -> None:
        self._closed = True
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._renewer
            self._renewer = None
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


__all__ = [
    "Context",
    "Lease",
    "Op",
    "VaultStore",
    "classify_error",
    "custom_metadata_for",
    "data_document",
    "denied_message",
    "payload_from_kv",
    "resolve_conflict",
]
