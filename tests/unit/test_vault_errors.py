"""Unit tests for Vault error classification and messages (no network)."""

from __future__ import annotations

import time
from typing import Any

import hvac.exceptions
import pytest
import requests
from pydantic import SecretStr

from syncd.payload import TokenPayload
from syncd.stores.base import FatalStoreError, TransientStoreError
from syncd.stores.vault import (
    Context,
    Op,
    classify_error,
    custom_metadata_for,
    data_document,
    is_loopback_url,
    payload_from_kv,
    resolve_conflict,
)
from syncd.stores.vault.layout import KvValue, RawValue, kv_value, split_value

CTX = Context(store="vault", url="https://vault.internal:8200", mount="secret", kv_version=2, timeout=7.0)
WRITE = Op("write", "secret/data/vgs/calm", ("update",))
READ = Op("read", "secret/data/vgs/calm", ("read",))
META = Op("write metadata of", "secret/metadata/vgs/calm", ("update",))
LOGIN = Op("log in at", "auth/approle/login", ("update",), login_method="approle")
TOKEN = "hvs.CAESIsecretVAULTtoken0123456789"


def vault_error(status: int, errors: list[str] | None = None, *, retry_after: str | None = None, body: Any = None):
    exc = hvac.exceptions.VaultError.from_status(
        status, None, errors=errors, method="post", url="https://vault.internal:8200/v1/secret/data/vgs/calm", json=body
    )
    exc.status_code = status
    exc.retry_after = retry_after
    return exc


@pytest.mark.parametrize(
    ("exc", "code", "needle"),
    [
        (requests.exceptions.ConnectionError("refused"), "connection", "cannot reach Vault at https://vault.internal"),
        (requests.exceptions.ConnectTimeout("slow"), "connection", "cannot reach Vault"),
        (requests.exceptions.ReadTimeout("slow"), "timeout", "did not answer within 7s"),
        (vault_error(503, ["Vault is sealed"]), "sealed", "is sealed"),
        (vault_error(503, ["node is in standby mode"]), "503", "standby"),
        (vault_error(500, ["internal error"]), "500", "answered 500"),
        (vault_error(502, ["bad gateway"]), "502", "answered 502"),
        (vault_error(504, ["gateway timeout"]), "504", "answered 504"),
        (vault_error(412, ["required index state not present"]), "412", "answered 412"),
        (vault_error(429, ["rate limit quota exceeded"]), "429", "rate limiting"),
    ],
)
def test_transient(exc: BaseException, code: str, needle: str) -> None:
    err = classify_error(exc, WRITE, CTX)
    assert isinstance(err, TransientStoreError), err
    assert err.code == code
    assert needle in err.message
    assert "secret/data/vgs/calm" in err.message


def test_retry_after_seconds_and_date() -> None:
    assert classify_error(vault_error(429, ["quota"], retry_after="7"), WRITE, CTX).retry_after == 7.0
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    ra = classify_error(vault_error(503, ["busy"], retry_after=future), WRITE, CTX).retry_after
    assert ra is not None and 25 <= ra <= 31


def test_denied_names_capability_and_path() -> None:
    err = classify_error(vault_error(403, ["1 error occurred:\n\t* permission denied\n\n"]), WRITE, CTX)
    assert isinstance(err, FatalStoreError)
    assert err.code == "403"
    assert '"update"' in err.message
    assert 'path "secret/data/vgs/calm" { capabilities = ["update"] }' in err.message
    assert "permission denied" in err.message
    assert "1 error occurred" not in err.message  # de-noised


def test_denied_metadata_and_read() -> None:
    meta = classify_error(vault_error(403, ["permission denied"]), META, CTX)
    assert "secret/metadata/vgs/calm" in meta.message and '"update"' in meta.message
    read = classify_error(vault_error(403, ["permission denied"]), READ, CTX)
    assert '"read"' in read.message


def test_permission_shaped_400_is_a_denial() -> None:
    err = classify_error(vault_error(400, ["permission denied on this path"]), WRITE, CTX)
    assert isinstance(err, FatalStoreError)
    assert 'needs "update" on secret/data/vgs/calm' in err.message


def test_mount_not_found() -> None:
    err = classify_error(
        vault_error(404, ['no handler for route "secret/data/vgs/calm". route entry not found.']), WRITE, CTX
    )
    assert isinstance(err, FatalStoreError)
    assert err.code == "mount_not_found"
    assert "bao secrets enable -path=secret -version=2 kv" in err.message


def test_v1_store_on_v2_mount() -> None:
    body = {"warnings": ["Invalid path for a versioned K/V secrets engine. See the API docs"]}
    ctx = Context(store="vault", url="http://127.0.0.1:8200", mount="secret", kv_version=1)
    err = classify_error(vault_error(404, None, body=body), Op("write", "secret/vgs/calm", ("update",)), ctx)
    assert isinstance(err, FatalStoreError) and err.code == "kv_version"
    assert "kv_version = 2" in err.message


def test_other_400_is_fatal_with_vault_text() -> None:
    err = classify_error(vault_error(400, ["custom_metadata validation failed"]), META, CTX)
    assert isinstance(err, FatalStoreError)
    assert "custom_metadata validation failed" in err.message


@pytest.mark.parametrize(
    ("status", "errors", "needle"),
    [
        (400, ["invalid role or secret ID"], "secret_id can expire"),
        (404, ['no handler for route "auth/approle/login". route entry not found.'], "bao auth enable -path=approle"),
        (403, ["permission denied"], "was refused"),
    ],
)
def test_login_errors(status: int, errors: list[str], needle: str) -> None:
    err = classify_error(vault_error(status, errors), LOGIN, CTX)
    assert isinstance(err, FatalStoreError)
    assert needle in err.message
    assert "auth/approle/login" in err.message


def test_login_outage_is_transient() -> None:
    assert isinstance(classify_error(vault_error(503, ["Vault is sealed"]), LOGIN, CTX), TransientStoreError)
    assert isinstance(classify_error(requests.exceptions.ConnectionError("x"), LOGIN, CTX), TransientStoreError)


def test_tls_verification_failure_is_fatal_with_hint() -> None:
    exc = requests.exceptions.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    err = classify_error(exc, WRITE, CTX)
    assert isinstance(err, FatalStoreError) and "ca_cert" in err.message


def test_messages_never_carry_a_token() -> None:
    from syncd import logs

    logs.register_secret(TOKEN)
    exc = vault_error(500, [f"oops X-Vault-Token: {TOKEN}"])
    err = classify_error(exc, WRITE, CTX)
    assert TOKEN not in err.message
    err = classify_error(requests.exceptions.ConnectionError(f"token={TOKEN}"), WRITE, CTX)
    assert TOKEN not in err.message


def test_namespace_in_message() -> None:
    ctx = Context(store="vault", url="https://v:8200", mount="secret", kv_version=2, namespace="team-a")
    err = classify_error(vault_error(403, ["permission denied"]), WRITE, ctx)
    assert "namespace team-a" in err.message


# --------------------------------------------------------------------------- pure helpers


def payload(token: str = "tok-0123456789", *, cred: str = "calm", life: float = 300, scope: str | None = "a b"):
    now = 1_800_000_000.0
    return TokenPayload(
        credential=cred,
        access_token=SecretStr(token),
        issued_at=now,
        expires_at=now + life,
        refresh_after=now + life / 2,
        scope=scope,
    )


def test_resolve_conflict_table() -> None:
    ours = payload("ours-0123456789", life=300)
    assert resolve_conflict(None, ours) == "write"
    assert resolve_conflict(ours, ours) == "same"
    # a caching IdP re-issued the same token with a later expiry: the path must get it
    assert resolve_conflict(payload("ours-0123456789", life=200), ours) == "write"
    assert resolve_conflict(payload("ours-0123456789", life=400), ours) == "same"
    assert resolve_conflict(payload("theirs-012345678", life=400), ours) == "adopt"
    assert resolve_conflict(payload("theirs-012345678", life=200), ours) == "write"
    assert resolve_conflict(payload("theirs-012345678", life=300), ours) == "write"  # not later: keep ours
    assert resolve_conflict(payload("theirs-012345678", life=400, cred="card"), ours) == "write"


def test_custom_metadata_strings_only_and_bounded() -> None:
    md = custom_metadata_for(payload(scope=None))
    assert set(md) == {"credential", "expires_at", "issued_at", "refresh_after", "fingerprint", "token_type"}
    assert all(isinstance(v, str) and v for v in md.values())
    assert "access_token" not in md
    long = custom_metadata_for(payload(scope="s" * 600))
    assert "scope" not in long  # KV v2 refuses values over 512 bytes


def test_data_documents() -> None:
    p = payload()
    assert data_document(p, "json", 2) == p.to_dict()
    assert data_document(p, "raw", 2) == {"access_token": "tok-0123456789"}
    assert data_document(p, "raw", 1) == p.to_dict()  # v1 has no metadata: public fields beside the token


def test_payload_from_kv_raw_and_json() -> None:
    p = payload()
    assert payload_from_kv(p.to_dict(), None, source="x").fingerprint == p.fingerprint
    raw = payload_from_kv({"access_token": "tok-0123456789"}, custom_metadata_for(p), source="x")
    assert raw.expires_at == pytest.approx(p.expires_at, abs=0.01)
    with pytest.raises(ValueError, match="custom_metadata"):
        payload_from_kv({"access_token": "tok-0123456789"}, None, source="x")
    stale = custom_metadata_for(payload("another-token-xyz"))
    with pytest.raises(ValueError, match="fingerprint"):
        payload_from_kv({"access_token": "tok-0123456789"}, stale, source="x")


_DOC = payload().to_dict()
_META = custom_metadata_for(payload())


@pytest.mark.parametrize(
    ("data", "custom", "kv_version", "expect"),
    [
        (_DOC, None, 2, "document"),
        (_DOC, _META, 2, "document"),  # json format: custom_metadata only describes it
        ({"access_token": "tok-0123456789"}, _META, 2, "raw"),
        ({"access_token": "tok-0123456789"}, {**_META, "owner": "team-a", "version": "9"}, 2, "raw"),
        ({"access_token": "tok-0123456789"}, _META, 1, "document"),  # v1 is always the whole document
        ({"foo": "bar"}, _META, 2, "document"),  # not a token at all: the payload check says what is missing
        ({"access_token": "tok-0123456789"}, None, 2, "no expires_at in the KV v2 custom_metadata"),
        ({"access_token": "tok-0123456789"}, {"credential": "calm"}, 2, "no expires_at"),
        ({"access_token": 42}, _META, 2, "access_token is not a string"),
        (None, None, 2, "not a JSON object"),
        (["a"], None, 1, "not a JSON object"),
    ],
)
def test_split_value_table(data: Any, custom: Any, kv_version: int, expect: str) -> None:
    """The one rule both the store and the consumer reader use to tell what a KV value holds."""
    if expect not in ("document", "raw"):
        with pytest.raises(ValueError, match=expect):
            split_value(data, custom, kv_version, source="x")
        return
    held = split_value(data, custom, kv_version, source="x")
    if expect == "document":
        assert held is data
    else:
        assert isinstance(held, RawValue) and held.token == "tok-0123456789"
        assert held.fields == _META  # only the fields syncd writes, never an operator's own keys


def test_kv_value_unpacks_both_versions() -> None:
    v2 = {"data": {"data": _DOC, "metadata": {"version": 3, "custom_metadata": _META}}}
    assert kv_value(v2, 2) == KvValue(_DOC, _META, 3)
    deleted = {"data": {"data": None, "metadata": {"version": 4, "deletion_time": "2026-12-01T10:00:00Z"}}}
    assert kv_value(deleted, 2) == KvValue(None, None, 4)
    assert kv_value({"data": _DOC}, 1) == KvValue(_DOC)
    assert kv_value({"errors": []}, 2) is None and kv_value(None, 1) is None


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8200", True),
        ("http://localhost:8200", True),
        ("http://[::1]:8200", True),
        ("http://vault.internal:8200", False),
        ("http://10.0.0.5:8200", False),
    ],
)
def test_loopback(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback
