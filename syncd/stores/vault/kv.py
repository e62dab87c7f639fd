"""KV v1 / v2 reads and writes for the store: check-and-set, custom_metadata, the mount check.

KV v2 writes use ``cas`` = the version this process last wrote or read for the
path. A check-and-set mismatch means another writer (a second daemon, or a
human) changed the path: the store re-reads it and, if it holds a token of the
same credential that expires later than ours, returns it as
``WriteResult.adopted`` without writing (the engine adopts it); otherwise it
retries with the version it just read, a bounded number of times. KV v1 is a
plain overwrite. What goes where is :mod:`syncd.stores.vault.layout`'s business.

Every method here is one blocking attempt; the caller runs it in the store's
thread pool, with a live token (:class:`~syncd.stores.vault.auth.TokenKeeper`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import hvac.exceptions
import hvac.utils
import requests

from syncd import logs
from syncd.payload import PayloadError, TokenPayload, holds_token
from syncd.stores.base import FatalStoreError, StoreError, TransientStoreError, WriteResult
from syncd.stores.vault.errors import CasMismatch, Context, Op, call, status_of, translate, vault_messages
from syncd.stores.vault.layout import (
    KvValue,
    custom_metadata_for,
    data_document,
    data_path,
    kv_value,
    metadata_path,
    payload_from_kv,
)

log = logs.get_logger("syncd.stores.vault")

CAS_ATTEMPTS = 3  # conflicts in a row before giving up for this run (the engine retries with backoff)


class NotPlain(Exception):
    """A read answer :meth:`KvPaths.read_answered` leaves to the hvac path (a denial, an error, a redirect...)."""


@dataclass
class PathState:
    """Per KV path: the version for the next ``cas``, and what this process wrote there."""

    version: int | None = None  # None: unknown, read before writing
    written_fingerprint: str | None = None
    metadata_fingerprint: str | None = None
    exists: bool | None = None


@dataclass(frozen=True)
class Stored:
    """What a KV v2 path holds, as the write path needs to know it."""

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


class KvPaths:
    """The KV paths of one store: what this process knows of each, and the requests that change them."""

    def __init__(self, name: str, client: Any, ctx: Context, max_versions: int) -> None:
        self.name = name
        self.mount = ctx.mount
        self.kv_version = ctx.kv_version
        self.max_versions = max_versions
        self._client = client
        self._ctx = ctx
        self._paths: dict[str, PathState] = {}
        self._mount_checked = False

    def data_path(self, key: str) -> str:
        return data_path(self.mount, key, self.kv_version)

    def metadata_path(self, key: str) -> str:
        return metadata_path(self.mount, key)

    def write(self, key: str, payload: TokenPayload, fmt: str) -> WriteResult:
        self._check_mount(key)
        if self.kv_version == 2:
            return self._write_v2(key, payload, fmt)
        return self._write_v1(key, payload, fmt)

    def read(self, key: str) -> TokenPayload | None:
        self._check_mount(key)
        if self.kv_version == 1:
            return self._read_v1(key)
        stored = self._lookup_v2(key, self._path_state(key))
        if stored.problem is not None:
            raise stored.problem
        return stored.payload

    def _path_state(self, key: str) -> PathState:
        state = self._paths.get(key)
        if state is None:
            state = self._paths.setdefault(key, PathState())
        return state

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

    def _stored_from(self, resp: Any, state: PathState, source: str) -> Stored:
        value = kv_value(resp, 2) or KvValue(None)
        custom = value.custom_metadata if isinstance(value.custom_metadata, dict) else None
        meta_fp = str(custom["fingerprint"]) if custom and custom.get("fingerprint") else None
        state.version = value.version
        state.exists = value.version > 0
        if value.data is None:
            return Stored(value.version, None, metadata_fingerprint=meta_fp)
        try:
            payload = payload_from_kv(value.data, custom, source=source)
        except PayloadError as exc:
            return Stored(value.version, None, self._payload_problem(exc), metadata_fingerprint=meta_fp)
        logs.register_secret(payload.access_token.get_secret_value())
        return Stored(value.version, payload, metadata_fingerprint=meta_fp)

    def _payload_problem(self, exc: PayloadError) -> StoreError:
        text = str(exc)
        if "fingerprint does not match" in text:
            return TransientStoreError(
                f"{text}: custom_metadata describes another token (a write was interrupted between the data and "
                "metadata requests, or two writers raced); the next rotation rewrites both",
                code="metadata_stale",
            )
        return FatalStoreError(text, code="payload")

    def _lookup_v2(self, key: str, state: PathState) -> Stored:
        """Read the current version; a missing path is version 0, a deleted latest version keeps its number."""
        path = self.data_path(key)
        op = Op("read", path, ("read",))
        try:
            resp = self._client.secrets.kv.v2.read_secret_version(
                path=key, mount_point=self.mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.VaultError as exc:
            if status_of(exc) == 404 and "no handler for route" not in vault_messages(exc).lower():
                body = getattr(exc, "json", None)
                if isinstance(body, dict) and isinstance(body.get("data"), dict):
                    return self._stored_from(body, state, f"vault {path}")  # deleted latest version
                state.version, state.exists = 0, False
                return Stored(0, None)
            raise translate(exc, op, self._ctx) from None
        except (requests.exceptions.RequestException, ValueError) as exc:
            raise translate(exc, op, self._ctx) from None
        return self._stored_from(resp, state, f"vault {path}")

    def _write_metadata(self, key: str, payload: TokenPayload, state: PathState) -> None:
        path = self.metadata_path(key)
        op = Op("write metadata of", path, ("update",) if state.exists else ("create", "update"))
        body = self.metadata_body(payload)
        # Not hvac's update_metadata: it always sends delete_version_after="0s", which would clear an
        # operator's per-path setting at every rotation. Only the two fields syncd owns are sent.
        url = hvac.utils.format_url("/v1/{mount}/metadata/{path}", mount=self.mount, path=key)
        call(op, self._ctx, lambda: self._client.adapter.post(url, json=body))
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
                resp = call(op, self._ctx, send)
            except CasMismatch:
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
            self.data_written(key, payload, version)
            self._write_metadata(key, payload, state)
            return WriteResult(written=True, version=str(version), location=location)
        raise TransientStoreError(
            f"store {self.name!r}: {CAS_ATTEMPTS} check-and-set conflicts in a row on {location}: another writer "
            "keeps changing it; retrying with backoff",
            code="cas_conflict",
        )

    # ------------------------------------------------------------------ the plain write, sent by .aio

    def plain_write(self, key: str, payload: TokenPayload, fmt: str) -> tuple[int, dict[str, Any]] | None:
        """The data write's ``cas`` and body when writing ``payload`` is the plain case, else None.

        Plain: KV v2, the mount checked, the path's current version known (from the last write
        or read) and this token not written there yet. Then :meth:`write` would send just this
        request and the metadata's; anything else (the first write, a lookup, a metadata write
        left to finish) is :meth:`write`'s alone.
        """
        if self.kv_version != 2 or not self._mount_checked:
            return None
        state = self._paths.get(key)
        if state is None or state.version is None or state.written_fingerprint == payload.fingerprint:
            return None
        return state.version, {"options": {"cas": state.version}, "data": data_document(payload, fmt, 2)}

    def data_written(self, key: str, payload: TokenPayload, version: int) -> None:
        """The plain data write was answered with KV ``version``: what :meth:`_write_v2` records then."""
        state = self._path_state(key)
        state.version, state.exists = version, True
        state.written_fingerprint, state.metadata_fingerprint = payload.fingerprint, None

    def metadata_body(self, payload: TokenPayload) -> dict[str, Any]:
        """The metadata write's body: only the two fields syncd owns (see :meth:`_write_metadata`)."""
        return {"max_versions": self.max_versions, "custom_metadata": custom_metadata_for(payload)}

    def metadata_written(self, key: str, payload: TokenPayload) -> None:
        self._path_state(key).metadata_fingerprint = payload.fingerprint

    # ------------------------------------------------------------------ KV v1

    def _write_v1(self, key: str, payload: TokenPayload, fmt: str) -> WriteResult:
        state = self._path_state(key)
        location = self.data_path(key)
        caps = ("update",) if state.exists else ("create", "update")
        op = Op("write", location, caps)
        doc = data_document(payload, fmt, 1)
        # method="PUT": without it hvac reads the path first to choose POST or PUT (an extra request
        # that also needs `read`); Vault treats both alike and decides create/update itself.
        call(
            op,
            self._ctx,
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
            says = vault_messages(exc).lower()
            if status_of(exc) == 404 and "no handler for route" not in says and "versioned k/v" not in says:
                self._path_state(key).exists = False
                return None
            raise translate(exc, op, self._ctx) from None
        except (requests.exceptions.RequestException, ValueError) as exc:
            raise translate(exc, op, self._ctx) from None
        return self._v1_payload(key, resp)

    def _v1_payload(self, key: str, resp: Any) -> TokenPayload:
        self._path_state(key).exists = True
        value = kv_value(resp, 1)
        try:
            payload = payload_from_kv(
                value.data if value else None, None, source=f"vault {self.data_path(key)}", kv_version=1
            )
        except PayloadError as exc:
            raise self._payload_problem(exc) from None
        logs.register_secret(payload.access_token.get_secret_value())
        return payload

    # ------------------------------------------------------------------ reads answered elsewhere

    @property
    def mount_checked(self) -> bool:
        return self._mount_checked

    def read_answered(self, key: str, status: int, body: Any) -> TokenPayload | None:
        """What :meth:`read` returns (or raises) when the data path's GET was answered ``status``, ``body``.

        For the answers that need no more than the body: a 200 with a JSON object, and a 404 that is
        Vault's plain "nothing here" (``{"errors": []}``) or a KV v2 latest version that was deleted.
        Anything else raises :class:`NotPlain`: only the hvac path (:meth:`read`) tells what it means.
        The mount must have been checked already (:attr:`mount_checked`).
        """
        if not isinstance(body, dict):
            raise NotPlain(status)
        gone = status == 404 and body.get("errors") == [] and set(body) <= {"errors", "warnings"}
        if self.kv_version == 1:
            if status == 200:
                return self._v1_payload(key, body)
            if gone:
                self._path_state(key).exists = False
                return None
            raise NotPlain(status)
        state = self._path_state(key)
        if status == 200 or (status == 404 and isinstance(body.get("data"), dict)):  # 404: deleted latest version
            stored = self._stored_from(body, state, f"vault {self.data_path(key)}")
        elif gone:
            state.version, state.exists = 0, False
            return None
        else:
            raise NotPlain(status)
        if stored.problem is not None:
            raise stored.problem
        return stored.payload
