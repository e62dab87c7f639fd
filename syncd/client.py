"""Consumer side: read the token syncd keeps fresh, and send it correctly.

A consumer has three things to get right: where the token is, when to read it
again, and what to do on a 401. This module does all three:

- :class:`TokenReader` (and its asyncio twin :class:`AsyncTokenReader`) reads a
  syncd payload from a source URL (``file:///...``, ``vault://mount/path``,
  ``aws-sm://secret-id``, ``aws-ssm:///parameter``), caches it, and reads the
  store again only when the payload says so (``refresh_after``), so a fleet of
  consumers costs the store one read per rotation each, not one per request.
  It never hands out an expired token.
- :class:`SyncdAuth` (httpx, sync and async) and :class:`SyncdRequestsAuth`
  (requests) put ``Authorization: <token_type> <token>`` on every request and,
  on a 401, force one re-read and resend only if the store had a different token.

Library code: it logs with stdlib :mod:`logging` under ``syncd.client`` and
configures nothing. boto3 and hvac are imported only by the sources that need
them, so a consumer reading a file never pays for them. No message, log line or
``repr`` contains a token; tokens are identified by their fingerprint.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import math
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx

from syncd.payload import TokenPayload, fingerprint, to_rfc3339
from syncd.stores.aws_secretsmanager.read import SecretsManagerSource as _SecretsManagerSource
from syncd.stores.aws_ssm.read import SsmSource as _SsmSource
from syncd.stores.file.read import FileSource as _FileSource
from syncd.stores.reading import TORN_READ_ATTEMPTS as _TORN_READ_ATTEMPTS
from syncd.stores.reading import Fetched as _Fetched
from syncd.stores.reading import Source as _Source
from syncd.stores.reading import (
    TokenError,
    TokenExpiredError,
    TokenFormatError,
    TokenNotFoundError,
    TokenStoreError,
)
from syncd.stores.reading import from_doc as _from_doc
from syncd.stores.reading import from_raw as _from_raw
from syncd.stores.reading import torn as _torn

if TYPE_CHECKING:
    import requests

__all__ = [
    "AsyncTokenReader",
    "SyncdAuth",
    "SyncdRequestsAuth",
    "TokenError",
    "TokenExpiredError",
    "TokenFormatError",
    "TokenNotFoundError",
    "TokenPayload",
    "TokenReader",
    "TokenStoreError",
    "authorization_header",
]

log = logging.getLogger("syncd.client")

#: Default pause between two reads that cannot bring anything new (same token
#: after refresh_after, a failed read, an expired token in the store).
DEFAULT_MIN_REREAD: Final = 1.0
#: Default timeout of one store call (connect and read), seconds.
DEFAULT_TIMEOUT: Final = 5.0
#: The automatic grace after refresh_after is this fraction of the time between
#: refresh_after and expiry, capped at ``_GRACE_CAP`` seconds (see ``_refresh_point``).
_GRACE_FRACTION: Final = 0.2
_GRACE_CAP: Final = 10.0
#: Longest pause between re-reads after store errors while the cached token is valid.
_ERROR_BACKOFF_CAP: Final = 30.0


def _expired_error(source: str, payload: TokenPayload, now: float, margin: float) -> TokenExpiredError:
    ago = now - payload.expires_at
    when = to_rfc3339(payload.expires_at)
    if ago >= 0:
        what = f"the stored token ({payload.fingerprint}) expired {_human(ago)} ago, at {when}"
    else:
        what = (
            f"the stored token ({payload.fingerprint}) expires in {_human(-ago)}, at {when}, "
            f"within the reader's expiry_margin of {margin:g}s"
        )
    return TokenExpiredError(
        f"{source}: {what}; syncd has not written a newer one. Check the daemon (`syncd status`) "
        "and its /readyz endpoint for this credential.",
        source,
        expires_at=payload.expires_at,
        expired_for=ago,
    )


def _human(seconds: float) -> str:
    s = abs(seconds)
    if s < 10:
        return f"{s:.1f}s"
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.1f}m"
    return f"{s / 3600:.1f}h"


def authorization_header(payload: TokenPayload) -> str:
    """The ``Authorization`` value for ``payload``: ``<token_type> <token>``.

    ``bearer`` in any case is sent as ``Bearer`` (Keycloak may answer ``bearer``;
    RFC 6750 says ``Bearer`` and some servers compare it case-sensitively).
    """
    scheme = payload.token_type.strip() or "Bearer"
    if scheme.lower() == "bearer":
        scheme = "Bearer"
    return f"{scheme} {payload.access_token.get_secret_value()}"


# --------------------------------------------------------------------------- sources


class _VaultSource(_Source):
    """A Vault / OpenBao KV secret written by syncd (KV v2 by default, v1 with ``kv=1``)."""

    def __init__(
        self,
        *,
        mount: str,
        path: str,
        kv_version: int,
        addr: str,
        token: str | None,
        namespace: str | None,
        timeout: float,
        description: str,
    ) -> None:
        self.mount = mount
        self.path = path
        self.kv_version = kv_version
        self.addr = addr.rstrip("/")
        self._token = token
        self.namespace = namespace
        self.timeout = timeout
        self.description = description
        self._client: Any = None
        self._lock = threading.Lock()

    def _resolve_token(self) -> str:
        if self._token:
            return self._token
        for name in ("VAULT_TOKEN", "BAO_TOKEN"):
            value = os.environ.get(name, "").strip()
            if value:
                return value
        token_file = Path.home() / ".vault-token"
        try:
            value = token_file.read_text(encoding="utf-8").strip()
        except OSError:
            value = ""
        if value:
            return value
        raise TokenStoreError(
            f"{self.description}: no Vault token: pass vault_token=..., set VAULT_TOKEN, or log in so that "
            f"{token_file} exists (Vault Agent's token sink works too)",
            self.description,
        )

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                import hvac

                skip = os.environ.get("VAULT_SKIP_VERIFY", "").strip().lower() in ("1", "true", "yes")
                verify: bool | str = False if skip else (os.environ.get("VAULT_CACERT") or True)
                self._client = hvac.Client(
                    url=self.addr,
                    token=self._resolve_token(),
                    namespace=self.namespace,
                    timeout=self.timeout,
                    verify=verify,
                )
            return self._client

    def _forget_client(self) -> None:
        # A 403 may mean our Vault token expired and the environment / token file now has a new one.
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a broken session must not mask the real error
                client.adapter.close()

    def _read_once(self) -> tuple[Any, Any]:
        import hvac.exceptions as hv
        import requests.exceptions

        src = self.description
        client = self._get_client()
        where = f"{self.mount}/{'data/' if self.kv_version == 2 else ''}{self.path}"
        try:
            if self.kv_version == 2:
                resp = client.secrets.kv.v2.read_secret_version(
                    path=self.path, mount_point=self.mount, raise_on_deleted_version=True
                )
            else:
                resp = client.secrets.kv.v1.read_secret(path=self.path, mount_point=self.mount)
        except hv.InvalidPath as exc:
            hint = _vault_message(exc)
            raise TokenNotFoundError(
                f"{src}: no secret at {where} on {self.addr} (KV v{self.kv_version})"
                + (f": {hint}" if hint else "")
                + "; syncd has not written it yet, the path or mount is wrong, or the mount is KV "
                + ("v1 (add ?kv=1)" if self.kv_version == 2 else "v2 (drop ?kv=1)"),
                src,
            ) from None
        except (hv.Forbidden, hv.Unauthorized) as exc:
            self._forget_client()
            raise TokenStoreError(
                f"{src}: permission denied reading {where} on {self.addr} ({_vault_message(exc) or 'HTTP 403'}); "
                "the Vault token needs a policy with read on that path, and must not have expired",
                src,
            ) from None
        except hv.VaultDown:
            raise TokenStoreError(f"{src}: Vault at {self.addr} is sealed or in maintenance (HTTP 503)", src) from None
        except hv.VaultError as exc:
            raise TokenStoreError(
                f"{src}: Vault at {self.addr} answered {exc.__class__.__name__}: {_vault_message(exc)}", src
            ) from None
        except requests.exceptions.RequestException as exc:
            raise TokenStoreError(
                f"{src}: cannot reach Vault at {self.addr} ({exc.__class__.__name__}); check VAULT_ADDR", src
            ) from None
        if not isinstance(resp, dict) or not isinstance(resp.get("data"), dict):
            raise TokenFormatError(f"{src}: Vault returned no data for {where}", src)
        data = resp["data"]
        if self.kv_version == 1:
            return data, None
        meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
        return data.get("data"), (meta or {}).get("custom_metadata")

    def fetch(self, now: float) -> _Fetched:
        src = self.description
        for attempt in range(_TORN_READ_ATTEMPTS):
            doc, custom = self._read_once()
            if not isinstance(doc, dict):
                raise TokenFormatError(f"{src}: the secret's data is not a JSON object", src)
            if "expires_at" in doc or "access_token" not in doc or self.kv_version == 1:
                return _from_doc(doc, src)
            # format = "raw": data = {"access_token": ...}, public fields in custom_metadata.
            if not isinstance(custom, dict) or not custom.get("expires_at"):
                raise TokenFormatError(
                    f"{src}: holds a bare access_token but no expires_at in the KV v2 custom_metadata, "
                    "so its expiry is unknown (not written by syncd?)",
                    src,
                )
            token = doc["access_token"]
            if not isinstance(token, str):
                raise TokenFormatError(f"{src}: access_token is not a string", src)
            if _torn(token, custom) and attempt + 1 < _TORN_READ_ATTEMPTS:
                continue  # data and custom_metadata are two writes; read again
            meta = {**custom, **{k: v for k, v in doc.items() if k != "access_token"}}
            return _from_raw(token, meta, src, "custom_metadata")
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self._forget_client()


def _vault_message(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list | tuple) and errors:
        return "; ".join(str(e) for e in errors)[:300]
    text = str(exc).split(", on ")[0]  # hvac appends the method and URL
    return text[:300]


# --------------------------------------------------------------------------- source URLs

_FORMS: Final = (
    "file:///absolute/path/calm.json",
    "vault://<mount>/<path>[?kv=1][&mount=<mount>][&namespace=<ns>][&vault_addr=<url>]",
    "aws-sm://<secret name or ARN>[?region=<region>][&endpoint_url=<url>][&profile=<name>]",
    "aws-ssm:///<parameter/name>[?region=<region>][&endpoint_url=<url>][&profile=<name>]",
)
_SAFE_PARAMS: Final = frozenset(
    {"kv", "mount", "namespace", "vault_addr", "region", "endpoint_url", "profile", "format", "version"}
)


def _redacted(url: str) -> str:
    """The URL for error messages: values of unexpected query parameters are hidden (could be a token)."""
    head, sep, query = url.partition("?")
    if not sep:
        return url
    parts = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        parts.append(item if name in _SAFE_PARAMS or not eq else f"{name}=***")
    return f"{head}?{'&'.join(parts)}"


def _bad_url(url: str, why: str) -> ValueError:
    return ValueError(f"bad token source {_redacted(url)!r}: {why}. Accepted forms: " + " | ".join(_FORMS))


def _query(url: str, query: str, allowed: tuple[str, ...]) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if "token" in name.lower() or "secret" in name.lower():
            raise _bad_url(url, f"never put credentials in the URL ({name}=...); use the environment or arguments")
        if name not in allowed:
            accepted = ", ".join(allowed) if allowed else "none"
            raise _bad_url(url, f"unknown parameter {name!r} (accepted here: {accepted})")
        if name in params:
            raise _bad_url(url, f"parameter {name!r} given twice")
        if not value:
            raise _bad_url(url, f"parameter {name!r} is empty")
        params[name] = value
    return params


@dataclass(frozen=True)
class _Options:
    timeout: float
    vault_addr: str | None
    vault_token: str | None
    vault_namespace: str | None
    aws_session: Any


def _open_source(source: str | os.PathLike[str], opts: _Options) -> _Source:
    if isinstance(source, os.PathLike):
        path = Path(os.fspath(source))
        if not path.is_absolute():
            raise ValueError(f"token file path {str(path)!r} must be absolute. Accepted forms: " + " | ".join(_FORMS))
        return _FileSource(path)
    if not isinstance(source, str):
        raise TypeError(f"a token source is a URL string, got {type(source).__name__}")
    url = source.strip()
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or not scheme:
        hint = " (for a file, write file:///absolute/path)" if url.startswith("/") else ""
        raise _bad_url(url, f"no scheme{hint}")
    if "#" in rest:
        raise _bad_url(url, "unexpected '#' fragment")
    if scheme == "file":
        return _file_source(url)
    if scheme == "vault":
        return _vault_source(url, opts)
    if scheme in ("aws-sm", "aws-secretsmanager"):
        return _sm_source(url, rest, opts)
    if scheme == "aws-ssm":
        return _ssm_source(url, rest, opts)
    raise _bad_url(url, f"unknown scheme {scheme!r}")


def _file_source(url: str) -> _Source:
    parts = urlsplit(url)
    if parts.query:
        raise _bad_url(url, "file sources take no parameters (json or raw+sidecar is detected from the content)")
    if parts.netloc not in ("", "localhost"):
        raise _bad_url(url, f"{parts.netloc!r} looks like a relative path or a host; write file:/// + absolute path")
    path = unquote(parts.path)
    if not path.startswith("/") or path.endswith("/"):
        raise _bad_url(url, "the file path must be absolute and name a file")
    return _FileSource(Path(path))


def _vault_source(url: str, opts: _Options) -> _Source:
    parts = urlsplit(url)
    params = _query(url, parts.query, ("kv", "mount", "namespace", "vault_addr"))
    kv = params.get("kv", "2")
    if kv not in ("1", "2"):
        raise _bad_url(url, f"kv must be 1 or 2, got {kv!r}")
    whole = unquote(parts.netloc + parts.path).strip("/")
    if "mount" in params:
        mount, path = params["mount"].strip("/"), whole
    else:
        mount, _, path = whole.partition("/")
    if not mount or not path:
        raise _bad_url(url, "name the KV mount and the secret path, e.g. vault://secret/vgs/calm")
    addr = (
        opts.vault_addr or params.get("vault_addr") or os.environ.get("VAULT_ADDR") or os.environ.get("BAO_ADDR") or ""
    ).strip()
    if not addr:
        raise _bad_url(url, "no Vault address: set VAULT_ADDR, or pass vault_addr= (argument or URL parameter)")
    if not addr.startswith(("http://", "https://")):
        raise _bad_url(url, f"the Vault address {addr!r} must start with http:// or https://")
    namespace = (
        opts.vault_namespace
        or params.get("namespace")
        or os.environ.get("VAULT_NAMESPACE")
        or os.environ.get("BAO_NAMESPACE")
        or None
    )
    description = f"vault://{mount}/{path}" + ("?kv=1" if kv == "1" else "")
    return _VaultSource(
        mount=mount,
        path=path,
        kv_version=int(kv),
        addr=addr,
        token=opts.vault_token,
        namespace=namespace,
        timeout=opts.timeout,
        description=description,
    )


def _aws_params(url: str, rest: str) -> tuple[str, dict[str, str]]:
    name, _, query = rest.partition("?")
    params = _query(url, query, ("region", "endpoint_url", "profile"))
    endpoint = params.get("endpoint_url")
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise _bad_url(url, f"endpoint_url {endpoint!r} must start with http:// or https://")
    return unquote(name), params


def _sm_source(url: str, rest: str, opts: _Options) -> _Source:
    secret_id, params = _aws_params(url, rest)
    if not secret_id.strip("/"):
        raise _bad_url(url, "name the secret, e.g. aws-sm://vgs/calm?region=eu-west-1")
    region = params.get("region")
    if region is None and secret_id.startswith("arn:"):
        fields = secret_id.split(":")
        region = fields[3] if len(fields) > 3 and fields[3] else None
    return _SecretsManagerSource(
        secret_id,
        region=region,
        endpoint_url=params.get("endpoint_url"),
        profile=params.get("profile"),
        session=opts.aws_session,
        timeout=opts.timeout,
        description=f"aws-sm://{secret_id}",
    )


def _ssm_source(url: str, rest: str, opts: _Options) -> _Source:
    name, params = _aws_params(url, rest)
    if not name.strip("/"):
        raise _bad_url(url, "name the parameter, e.g. aws-ssm:///vgs/calm")
    if "/" in name and not name.startswith(("/", "arn:")):
        raise _bad_url(url, f"a hierarchical parameter name starts with '/': write aws-ssm:///{name}")
    region = params.get("region")
    if region is None and name.startswith("arn:"):
        fields = name.split(":")
        region = fields[3] if len(fields) > 3 and fields[3] else None
    return _SsmSource(
        name,
        region=region,
        endpoint_url=params.get("endpoint_url"),
        profile=params.get("profile"),
        session=opts.aws_session,
        timeout=opts.timeout,
        description=f"aws-ssm://{name}",
    )


# --------------------------------------------------------------------------- the cache


@dataclass(frozen=True)
class _Entry:
    payload: TokenPayload
    read_at: float
    next_read: float


class _Cache:
    """The freshness rules, shared by the sync and async readers (they differ only in locking).

    ``_entry`` is replaced, never mutated, so the lock-free fast path in the readers
    always sees a consistent (payload, next_read) pair.
    """

    def __init__(
        self,
        source: _Source,
        *,
        min_reread: float,
        refresh_grace: float | None,
        expiry_margin: float,
        clock: Callable[[], float],
    ) -> None:
        for name, value in (("min_reread", min_reread), ("expiry_margin", expiry_margin)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
        if refresh_grace is not None and not (math.isfinite(refresh_grace) and refresh_grace >= 0):
            raise ValueError(f"refresh_grace must be None or a finite number of seconds >= 0, got {refresh_grace!r}")
        self.source = source
        self.min_reread = min_reread
        self.refresh_grace = refresh_grace
        self.expiry_margin = expiry_margin
        self.clock = clock
        self.entry: _Entry | None = None
        self.error: TokenError | None = None
        self.error_at = 0.0
        self.expired: TokenPayload | None = None  # the expired payload behind a remembered TokenExpiredError
        self.failures = 0
        self.generation = 0  # completed read attempts; lets a forced re-read join one that just finished
        self.reads = 0
        self.read_errors = 0

    # -- queries (lock-free) ----------------------------------------------------------

    def usable(self, now: float) -> TokenPayload | None:
        entry = self.entry
        if entry is not None and now < entry.payload.expires_at - self.expiry_margin:
            return entry.payload
        return None

    def fresh(self, now: float) -> TokenPayload | None:
        entry = self.entry
        if entry is not None and now < entry.next_read and now < entry.payload.expires_at - self.expiry_margin:
            return entry.payload
        return None

    # -- decisions (under the reader's lock) ------------------------------------------

    def without_read(self, now: float, *, force: bool, rejected: str | None, generation: int) -> TokenPayload | None:
        """A payload to hand out without reading, or None to read now; may replay a recent error."""
        if force:
            valid = self.usable(now)
            if valid is not None:
                if rejected is not None and valid.fingerprint != fingerprint(rejected):
                    return valid  # someone already replaced the rejected token
                if self.generation != generation:
                    return valid  # a read finished while we waited for the lock: do not repeat it
            return None
        payload = self.fresh(now)
        if payload is not None:
            return payload
        if self.usable(now) is None and self.error is not None and now < self.error_at + self.min_reread:
            raise self._replay(now)
        return None

    def _replay(self, now: float) -> TokenError:
        err = self.error
        assert err is not None
        if isinstance(err, TokenExpiredError) and self.expired is not None:
            return _expired_error(self.source.description, self.expired, now, self.expiry_margin)  # a fresh "ago"
        return copy.copy(err)

    def _grace(self, payload: TokenPayload) -> float:
        window = max(payload.expires_at - payload.refresh_after, 0.0)
        if self.refresh_grace is None:
            return min(_GRACE_FRACTION * window, _GRACE_CAP)
        return min(self.refresh_grace, window / 2)

    def _backoff(self, payload: TokenPayload, now: float) -> float:
        step = self.min_reread * 2.0 ** min(self.failures - 1, 16)
        return max(self.min_reread, min(step, _ERROR_BACKOFF_CAP, (payload.expires_at - now) / 4))

    def after_read(self, fetched: _Fetched, now: float) -> TokenPayload:
        self.generation += 1
        payload = fetched.payload
        src = self.source.description
        previous = self.entry
        if now >= payload.expires_at - self.expiry_margin:
            err = _expired_error(src, payload, now, self.expiry_margin)
            valid = self.usable(now)
            if valid is not None and previous is not None:
                self.failures += 1
                delay = self._backoff(valid, now)
                log.warning(
                    "%s: the store returned an expired token (%s); keeping the cached %s, valid %s more; "
                    "next read in %.1fs",
                    src,
                    payload.fingerprint,
                    valid.fingerprint,
                    _human(valid.expires_at - now),
                    delay,
                )
                self.entry = replace(previous, next_read=now + delay)
                return valid
            self.error, self.error_at, self.expired = err, now, payload
            raise err
        self.error = None
        self.failures = 0
        if fetched.explicit_refresh:
            point = payload.refresh_after + self._grace(payload)
        else:
            # No refresh_after from the writer: read again when half of what was left is gone.
            point = now + (payload.expires_at - now) / 2
        next_read = max(point, now + self.min_reread)
        self.entry = _Entry(payload, now, next_read)
        if previous is None or previous.payload.fingerprint != payload.fingerprint:
            log.debug(
                "%s: token %s, expires in %s; next read in %s",
                src,
                payload.fingerprint,
                _human(payload.expires_at - now),
                _human(next_read - now),
            )
        return payload

    def after_error(self, exc: TokenError, now: float) -> TokenPayload:
        self.generation += 1
        self.read_errors += 1
        self.failures += 1
        valid = self.usable(now)
        entry = self.entry
        if valid is not None and entry is not None:
            delay = self._backoff(valid, now)
            log.warning(
                "%s: re-read failed (%s); using the cached token %s, valid %s more; next read in %.1fs",
                self.source.description,
                exc,
                valid.fingerprint,
                _human(valid.expires_at - now),
                delay,
            )
            self.entry = replace(entry, next_read=now + delay)
            return valid
        self.error, self.error_at, self.expired = exc, now, None
        raise exc


def _wrap_unexpected(exc: Exception, source: str) -> TokenStoreError:
    log.error("%s: unexpected %s while reading the store", source, exc.__class__.__name__, exc_info=exc)
    return TokenStoreError(f"{source}: unexpected {exc.__class__.__name__} while reading the store", source)


# --------------------------------------------------------------------------- readers


class _ReaderBase:
    _cache: _Cache

    def _setup(
        self,
        source: str | os.PathLike[str],
        *,
        min_reread: float,
        refresh_grace: float | None,
        expiry_margin: float,
        timeout: float,
        vault_addr: str | None,
        vault_token: str | None,
        vault_namespace: str | None,
        aws_session: Any,
        clock: Callable[[], float],
    ) -> None:
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        opts = _Options(timeout, vault_addr, vault_token, vault_namespace, aws_session)
        self._cache = _Cache(
            _open_source(source, opts),
            min_reread=min_reread,
            refresh_grace=refresh_grace,
            expiry_margin=expiry_margin,
            clock=clock,
        )

    @property
    def source(self) -> str:
        """The source, as shown in messages (never contains a credential)."""
        return self._cache.source.description

    @property
    def reads(self) -> int:
        """Store reads started so far (for metrics and tests: one per rotation is the goal)."""
        return self._cache.reads

    @property
    def read_errors(self) -> int:
        """Store reads that failed."""
        return self._cache.read_errors

    def __repr__(self) -> str:
        entry = self._cache.entry
        state = f" token={entry.payload.fingerprint}" if entry is not None else ""
        return f"{type(self).__name__}({self.source!r}{state})"


class TokenReader(_ReaderBase):
    """Read a syncd token from a store, cached until the payload says to read again.

    ``source`` is a URL: ``file:///var/run/syncd/calm.json``, ``vault://secret/vgs/calm``
    (``?kv=1`` for KV v1; address from ``vault_addr`` or ``VAULT_ADDR``, token from
    ``vault_token``, ``VAULT_TOKEN`` or ``~/.vault-token``, namespace from
    ``VAULT_NAMESPACE``), ``aws-sm://vgs/calm?region=eu-west-1`` (follows a slot
    index), ``aws-ssm:///vgs/calm?region=eu-west-1``. A bad URL raises ValueError
    at construction; nothing is read until the first :meth:`get`.

    Freshness: the store is read again after ``refresh_after`` plus a short grace
    (syncd starts minting at ``refresh_after``, the new token lands a moment
    later); the default grace is 20 % of the time from ``refresh_after`` to expiry,
    at most 10 s. A payload without ``refresh_after`` is read again when half of
    its remaining lifetime is gone. Reads that cannot bring anything new (same
    token again, store errors, an expired token) are at least ``min_reread``
    seconds apart. A token is never returned within ``expiry_margin`` seconds of
    its expiry.

    Thread-safe: one store read at a time; while it runs, other threads get the
    cached token if it is still valid, or wait for the read if it is not.
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        *,
        min_reread: float = DEFAULT_MIN_REREAD,
        refresh_grace: float | None = None,
        expiry_margin: float = 0.0,
        timeout: float = DEFAULT_TIMEOUT,
        vault_addr: str | None = None,
        vault_token: str | None = None,
        vault_namespace: str | None = None,
        aws_session: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._setup(
            source,
            min_reread=min_reread,
            refresh_grace=refresh_grace,
            expiry_margin=expiry_margin,
            timeout=timeout,
            vault_addr=vault_addr,
            vault_token=vault_token,
            vault_namespace=vault_namespace,
            aws_session=aws_session,
            clock=clock,
        )
        self._lock = threading.Lock()

    @classmethod
    def _sharing(cls, cache: _Cache) -> TokenReader:
        reader = cls.__new__(cls)
        reader._cache = cache
        reader._lock = threading.Lock()
        return reader

    def get(self) -> str:
        """The access token: valid now, read from the store only when due."""
        return self.token_info().access_token.get_secret_value()

    def token_info(self) -> TokenPayload:
        """The whole payload (its ``repr`` hides the token): expiry, type, scope, fingerprint."""
        cache = self._cache
        now = cache.clock()
        payload = cache.fresh(now)
        if payload is not None:
            return payload
        valid = cache.usable(now)
        if valid is None:
            self._lock.acquire()  # nothing valid to hand out: wait for the read in progress, or read
        elif not self._lock.acquire(blocking=False):
            return valid  # another thread is reading; the cached token is still good meanwhile
        try:
            return self._read_locked(force=False, rejected=None, generation=cache.generation)
        finally:
            self._lock.release()

    def refresh(self, rejected: str | None = None) -> TokenPayload:
        """Read the store now, bypassing the cache; return the payload then cached.

        For a 401: pass the token the server rejected, and the read is skipped if
        another thread already replaced it. Concurrent calls share one read.
        """
        cache = self._cache
        generation = cache.generation
        with self._lock:
            return self._read_locked(force=True, rejected=rejected, generation=generation)

    def _read_locked(self, *, force: bool, rejected: str | None, generation: int) -> TokenPayload:
        cache = self._cache
        payload = cache.without_read(cache.clock(), force=force, rejected=rejected, generation=generation)
        if payload is not None:
            return payload
        cache.reads += 1
        try:
            fetched = self._fetch(cache.clock())
        except TokenError as exc:
            return cache.after_error(exc, cache.clock())
        except Exception as exc:
            return cache.after_error(_wrap_unexpected(exc, self.source), cache.clock())
        return cache.after_read(fetched, cache.clock())

    def _fetch(self, now: float) -> _Fetched:
        """One store read (the place to instrument in tests)."""
        return self._cache.source.fetch(now)

    def close(self) -> None:
        """Release the store client (HTTP connections). The reader must not be used afterwards."""
        self._cache.source.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncTokenReader(_ReaderBase):
    """The asyncio twin of :class:`TokenReader`: same sources, options and rules.

    One store read at a time (an :class:`asyncio.Lock`); blocking SDK calls run
    in a worker thread so the event loop never waits on the store. Use one
    instance per event loop.
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        *,
        min_reread: float = DEFAULT_MIN_REREAD,
        refresh_grace: float | None = None,
        expiry_margin: float = 0.0,
        timeout: float = DEFAULT_TIMEOUT,
        vault_addr: str | None = None,
        vault_token: str | None = None,
        vault_namespace: str | None = None,
        aws_session: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._setup(
            source,
            min_reread=min_reread,
            refresh_grace=refresh_grace,
            expiry_margin=expiry_margin,
            timeout=timeout,
            vault_addr=vault_addr,
            vault_token=vault_token,
            vault_namespace=vault_namespace,
            aws_session=aws_session,
            clock=clock,
        )
        self._lock = asyncio.Lock()

    @classmethod
    def _sharing(cls, cache: _Cache) -> AsyncTokenReader:
        reader = cls.__new__(cls)
        reader._cache = cache
        reader._lock = asyncio.Lock()
        return reader

    async def get(self) -> str:
        """The access token: valid now, read from the store only when due."""
        return (await self.token_info()).access_token.get_secret_value()

    async def token_info(self) -> TokenPayload:
        """The whole payload (its ``repr`` hides the token)."""
        cache = self._cache
        now = cache.clock()
        payload = cache.fresh(now)
        if payload is not None:
            return payload
        if self._lock.locked():
            payload = cache.usable(now)
            if payload is not None:
                return payload  # a read is in progress; the cached token is still good
        async with self._lock:
            return await self._read_locked(force=False, rejected=None, generation=cache.generation)

    async def refresh(self, rejected: str | None = None) -> TokenPayload:
        """Read the store now, bypassing the cache (see :meth:`TokenReader.refresh`)."""
        generation = self._cache.generation
        async with self._lock:
            return await self._read_locked(force=True, rejected=rejected, generation=generation)

    async def _read_locked(self, *, force: bool, rejected: str | None, generation: int) -> TokenPayload:
        cache = self._cache
        payload = cache.without_read(cache.clock(), force=force, rejected=rejected, generation=generation)
        if payload is not None:
            return payload
        cache.reads += 1
        try:
            fetched = await self._fetch(cache.clock())
        except TokenError as exc:
            return cache.after_error(exc, cache.clock())
        except Exception as exc:
            return cache.after_error(_wrap_unexpected(exc, self.source), cache.clock())
        return cache.after_read(fetched, cache.clock())

    async def _fetch(self, now: float) -> _Fetched:
        """One store read, in a worker thread (the place to instrument in tests)."""
        return await asyncio.to_thread(self._cache.source.fetch, now)

    async def aclose(self) -> None:
        """Release the store client. The reader must not be used afterwards."""
        await asyncio.to_thread(self._cache.source.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


# --------------------------------------------------------------------------- HTTP auth

ReaderLike = TokenReader | AsyncTokenReader | str | os.PathLike[str]


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
        payload = reader.token_info()
        request.headers["Authorization"] = authorization_header(payload)
        response = yield request
        if response.status_code != 401:
            return
        try:
            fresh = reader.refresh(rejected=payload.access_token.get_secret_value())
        except TokenError as exc:
            log.warning("%s: 401 from %s, and the re-read failed: %s", reader.source, request.url.host, exc)
            return
        if not _retry_worth_it(reader.source, request.url.host, payload, fresh):
            return
        request.headers["Authorization"] = authorization_header(fresh)
        yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        reader = self.async_reader
        payload = await reader.token_info()
        request.headers["Authorization"] = authorization_header(payload)
        response = yield request
        if response.status_code != 401:
            return
        try:
            fresh = await reader.refresh(rejected=payload.access_token.get_secret_value())
        except TokenError as exc:
            log.warning("%s: 401 from %s, and the re-read failed: %s", reader.source, request.url.host, exc)
            return
        if not _retry_worth_it(reader.source, request.url.host, payload, fresh):
            return
        request.headers["Authorization"] = authorization_header(fresh)
        yield request


def _retry_worth_it(source: str, host: str, sent: TokenPayload, fresh: TokenPayload) -> bool:
    if fresh.fingerprint == sent.fingerprint:
        log.info(
            "%s: 401 from %s and the store still holds the token that was sent (%s); not retrying",
            source,
            host,
            sent.fingerprint,
        )
        return False
    log.info("%s: 401 from %s with %s; retrying once with %s", source, host, sent.fingerprint, fresh.fingerprint)
    return True


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
        payload = self.reader.token_info()
        r.headers["Authorization"] = authorization_header(payload)
        position: int | None = None
        body = r.body
        if body is not None and hasattr(body, "seek") and hasattr(body, "tell"):
            try:
                position = int(body.tell())
            except (OSError, ValueError):
                position = None
        sent = payload

        def on_response(response: requests.Response, **kwargs: Any) -> requests.Response:
            return self._handle_401(response, sent, position, **kwargs)

        r.register_hook("response", on_response)  # type: ignore[no-untyped-call]
        return r

    def _handle_401(
        self, response: requests.Response, sent: TokenPayload, position: int | None, **kwargs: Any
    ) -> requests.Response:
        if response.status_code != 401:
            return response
        request = response.request
        host = urlsplit(request.url or "").hostname or "?"
        try:
            fresh = self.reader.refresh(rejected=sent.access_token.get_secret_value())
        except TokenError as exc:
            log.warning("%s: 401 from %s, and the re-read failed: %s", self.reader.source, host, exc)
            return response
        if not _retry_worth_it(self.reader.source, host, sent, fresh):
            return response
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
        retry.headers["Authorization"] = authorization_header(fresh)
        connection = getattr(response, "connection", None)
        if connection is None:  # pragma: no cover - requests always sets it on adapter responses
            return response
        new: requests.Response = connection.send(retry, **kwargs)
        new.history.append(response)
        new.request = retry
        return new
