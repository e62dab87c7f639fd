"""Vault errors: what failed, and what the operator should do about it.

hvac raises a handful of exception classes and folds every other status into
``UnexpectedError``; :class:`StatusAdapter` records the real status so that
:func:`classify_error` can tell transient failures (retry with backoff) from
fatal ones (fix the configuration or the policy), with a message that names the
path, the capability and the fix. Messages never include a token.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

import hvac.adapters
import hvac.exceptions
import requests

from syncd import logs
from syncd.stores.base import FatalStoreError, StoreError, TransientStoreError

T = TypeVar("T")


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


class StatusAdapter(hvac.adapters.JSONAdapter):  # type: ignore[misc]
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


def status_of(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    if isinstance(code, int):
        return code
    return _STATUS_BY_CLASS.get(type(exc))


def vault_messages(exc: BaseException) -> str:
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


def retry_after_of(exc: BaseException) -> float | None:
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


def is_cas_mismatch(exc: BaseException) -> bool:
    return status_of(exc) == 400 and "check-and-set parameter did not match" in vault_messages(exc)


def is_denial(exc: BaseException) -> bool:
    """403/401, or a 400 whose text is a permission error (some plugins answer that way)."""
    status = status_of(exc)
    if status in (401, 403):
        return True
    return status == 400 and "permission denied" in vault_messages(exc).lower()


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
    status = status_of(exc)
    says = vault_messages(exc)
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
            retry_after=retry_after_of(exc),
        )
    if status is not None and (status >= 500 or status in (408, 412)):
        return TransientStoreError(
            f"{prefix}: Vault at {ctx.where} answered {status} to {op.action} {op.path}: {says}; retrying",
            code=code,
            retry_after=retry_after_of(exc),
        )
    if op.login_method is not None:
        return _login_error(exc, op, ctx, status, says)
    if is_denial(exc):
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
        retry_after=retry_after_of(exc),
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


# --------------------------------------------------------------------------- requests


class Denied(Exception):
    """A request was denied (403/401): the caller may log in again and retry once."""

    def __init__(self, op: Op, error: StoreError) -> None:
        super().__init__(error.message)
        self.op = op
        self.error = error


class CasMismatch(Exception):
    """The ``cas`` we sent is not the path's current version: another writer was there."""


def translate(exc: BaseException, op: Op, ctx: Context) -> Exception:
    """The exception to raise for a failed request: ``CasMismatch``, ``Denied`` or a StoreError."""
    if isinstance(exc, hvac.exceptions.VaultError):
        if is_cas_mismatch(exc):
            return CasMismatch()
        err = classify_error(exc, op, ctx)
        if op.login_method is None and is_denial(exc):
            return Denied(op, err)
        return err
    return classify_error(exc, op, ctx)


def call(op: Op, ctx: Context, fn: Callable[[], T]) -> T:
    """One Vault request. Denials become ``Denied`` (the caller may log in again), the rest StoreErrors."""
    try:
        return fn()
    except (
        hvac.exceptions.VaultError,
        requests.exceptions.RequestException,
        ValueError,
        KeyError,
        TypeError,
    ) as exc:
        raise translate(exc, op, ctx) from None
