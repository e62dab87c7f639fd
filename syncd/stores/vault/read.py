"""The consumer's side of Vault / OpenBao KV: read what :class:`~syncd.stores.vault.store.VaultStore` wrote.

:mod:`syncd.client` builds a :class:`VaultSource` from a ``vault://mount/path`` URL and
decides when to call :meth:`VaultSource.fetch`. The layout (paths, the raw format's
custom_metadata) comes from :mod:`syncd.stores.vault.layout`, the same module the
write side uses. hvac is imported on the first read, not on import.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

from syncd.payload import PayloadError
from syncd.stores.reading import (
    Fetched,
    RawRead,
    Source,
    TokenFormatError,
    TokenNotFoundError,
    TokenStoreError,
    fetch_untorn,
    from_doc,
)
from syncd.stores.vault.layout import KvValue, RawValue, data_path, kv_value, split_value


class VaultSource(Source):
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

    def _read_once(self) -> KvValue:
        import hvac.exceptions as hv
        import requests.exceptions

        src = self.description
        client = self._get_client()
        where = data_path(self.mount, self.path, self.kv_version)
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
        value = kv_value(resp, self.kv_version)
        if value is None:
            raise TokenFormatError(f"{src}: Vault returned no data for {where}", src)
        return value

    def fetch(self, now: float) -> Fetched:
        # A raw token's data and custom_metadata are two writes: fetch_untorn reads again between them.
        return fetch_untorn(self._read_held, self.description)

    def _read_held(self) -> Fetched | RawRead:
        src = self.description
        value = self._read_once()
        try:
            held = split_value(value.data, value.custom_metadata, self.kv_version, source=src)
        except PayloadError as exc:
            raise TokenFormatError(str(exc), src) from None
        if not isinstance(held, RawValue):
            return from_doc(held, src)
        return RawRead(held.token, held.fields, "custom_metadata")

    def close(self) -> None:
        self._forget_client()


def _vault_message(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list | tuple) and errors:
        return "; ".join(str(e) for e in errors)[:300]
    text = str(exc).split(", on ")[0]  # hvac appends the method and URL
    return text[:300]
