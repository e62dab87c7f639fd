"""How syncd lays a token out in Vault / OpenBao KV, for both sides (pure: no hvac, no I/O).

The daemon's store (``store.py``, ``kv.py``) and the consumer reader (``read.py``) both
build on this module, so the two cannot drift apart.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from syncd.payload import PayloadError, TokenPayload

METADATA_FIELDS = ("credential", "expires_at", "issued_at", "refresh_after", "fingerprint", "token_type", "scope")
METADATA_VALUE_MAX = 512  # KV v2 refuses longer custom_metadata values


# --------------------------------------------------------------------------- paths


def data_path(mount: str, key: str, kv_version: int) -> str:
    """The API path of the data (without /v1): what policies name and messages show."""
    return f"{mount}/data/{key}" if kv_version == 2 else f"{mount}/{key}"


def metadata_path(mount: str, key: str) -> str:
    """The API path of a KV v2 path's metadata (custom_metadata, max_versions)."""
    return f"{mount}/metadata/{key}"


# --------------------------------------------------------------------------- payload -> KV


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


# --------------------------------------------------------------------------- KV -> payload


@dataclass(frozen=True)
class KvValue:
    """One KV read answer, unpacked."""

    data: Any  # the data document; None for a deleted or destroyed KV v2 version
    custom_metadata: Any = None  # KV v2 only: the path's custom_metadata (describes the path, not the version)
    version: int = 0  # KV v2 only: the version read


def kv_value(resp: Any, kv_version: int) -> KvValue | None:
    """Unpack a KV read answer; None when it has no ``data`` object (not Vault's answer)."""
    outer = resp.get("data") if isinstance(resp, dict) else None
    if not isinstance(outer, dict):
        return None
    if kv_version == 1:
        return KvValue(outer)
    meta = outer.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    gone = bool(meta.get("deletion_time") or meta.get("destroyed"))
    return KvValue(
        data=None if gone else outer.get("data"),
        custom_metadata=meta.get("custom_metadata"),
        version=int(meta.get("version") or 0),
    )


@dataclass(frozen=True)
class RawValue:
    """A ``format = "raw"`` KV v2 value: the bare token, and the public fields from custom_metadata."""

    token: str
    fields: dict[str, Any]


def split_value(data: Any, custom_metadata: Any, kv_version: int, *, source: str) -> dict[str, Any] | RawValue:
    """What a KV value holds: a whole payload document, or a :class:`RawValue`. Raises PayloadError.

    A value is raw when KV v2 data has an ``access_token`` and no ``expires_at``; on KV v1 the
    data is always the whole document. Only the fields :func:`custom_metadata_for` writes are
    taken from custom_metadata, so an operator's own keys there never leak into the payload.
    """
    if not isinstance(data, dict):
        raise PayloadError(f"{source}: the value's data is not a JSON object (expected a syncd payload)")
    if kv_version == 1 or "expires_at" in data or "access_token" not in data:
        return data
    token = data["access_token"]
    if not isinstance(token, str):
        raise PayloadError(f"{source}: access_token is not a string")
    custom = custom_metadata if isinstance(custom_metadata, dict) else {}
    fields = {k: v for k, v in custom.items() if k in METADATA_FIELDS}
    if not fields.get("expires_at"):
        raise PayloadError(
            f"{source}: holds a bare access_token but no expires_at in the KV v2 custom_metadata, "
            "so its expiry is unknown (not written by syncd?)"
        )
    return RawValue(token, fields)


def payload_from_kv(data: Any, metadata: Any, *, source: str, kv_version: int = 2) -> TokenPayload:
    """Rebuild a payload from KV data (+ v2 custom_metadata for raw); raises PayloadError."""
    value = split_value(data, metadata, kv_version, source=source)
    if isinstance(value, RawValue):
        return TokenPayload.from_metadata(value.token, value.fields, source=source)
    return TokenPayload.from_dict(value, source=source)
