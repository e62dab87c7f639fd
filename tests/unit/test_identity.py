"""syncd.identity: which reload changes replace the held token (table-driven), and a changed secret value."""

from __future__ import annotations

from typing import Any

import pytest

from syncd.config import CredentialConfig
from syncd.identity import config_changes, digest, remint_reasons

BASE: dict[str, Any] = {
    "name": "calm",
    "token_url": "https://idp.example/token",
    "client_id": "calm",
    "client_secret": {"env": "IDENTITY_SECRET"},
    "scopes": ["cards:read"],
    "targets": [{"store": "local", "key": "calm.json"}],
}

# change to the credential -> identity keys it touches ([] = the held token is kept)
CASES: list[tuple[dict[str, Any], list[str]]] = [
    ({}, []),
    ({"scopes": ["cards:read", "cards:write"]}, ["scopes"]),
    ({"scopes": None}, ["scopes"]),
    ({"client_id": "card"}, ["client_id"]),
    ({"client_secret": {"env": "OTHER_SECRET"}}, ["client_secret"]),
    ({"token_url": "https://idp.example/other"}, ["token_url"]),
    ({"auth_method": "client_secret_basic"}, ["auth_method"]),
    ({"extra_params": {"audience": "cards"}}, ["extra_params"]),
    ({"targets": [{"store": "local", "key": "other.json"}]}, []),
    ({"refresh_at": 0.7, "min_remaining": "5s"}, []),
    ({"scopes": ["cards:write"], "client_id": "card"}, ["client_id", "scopes"]),
]


def cred(**changes: Any) -> CredentialConfig:
    return CredentialConfig(**{**BASE, **changes})


@pytest.mark.parametrize(("changes", "fields"), CASES)
def test_config_changes(changes, fields):
    assert config_changes(cred(), cred(**changes)) == fields
    assert remint_reasons(cred(), cred(**changes), None, None) == fields


def test_a_changed_secret_value_behind_the_same_reference_is_a_reason(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("first-secret-0123456789")
    cfg = cred(client_secret={"file": str(secret)})
    minted_with = digest(cfg)
    assert minted_with is not None and "first-secret" not in minted_with
    assert remint_reasons(cfg, cfg, minted_with, digest(cfg)) == []
    secret.write_text("second-secret-0123456789")
    (reason,) = remint_reasons(cfg, cfg, minted_with, digest(cfg))
    assert "client secret" in reason
    # a token adopted from a store has no known identity: only configured changes count
    assert remint_reasons(cfg, cfg, None, digest(cfg)) == []


def test_digest_of_an_unreadable_secret_is_none(monkeypatch):
    monkeypatch.delenv("IDENTITY_SECRET", raising=False)
    assert digest(cred()) is None
