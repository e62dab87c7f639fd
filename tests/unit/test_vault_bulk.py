"""The bulk KV reader's TLS settings are what a ``requests`` call of the store would use.

The reads themselves are compared with the store's own ``read`` against a real OpenBao in
tests/integration/test_startup_batch_reads.py; here only the TLS context, which that
plain-HTTP dev server cannot exercise.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from syncd.config import VaultStoreConfig
from syncd.stores.vault import VaultStore
from tests.peers.pki import Pki


def store(url: str, **kw: Any) -> VaultStore:
    cfg = VaultStoreConfig.model_validate(
        {"type": "vault", "url": url, "auth": {"method": "token", "token_env": "NO_SUCH_VAR"}, **kw}
    )
    return VaultStore("vault", cfg)


def test_ca_cert_and_client_certificate_are_loaded(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    pki = Pki(tmp_path)
    cert, key = pki.issue("syncd")
    ctx = store("https://127.0.0.1:8200", ca_cert=str(pki.ca_file), client_cert=str(cert), client_key=str(key))._bulk
    got = ctx._ssl_like_requests()
    assert isinstance(got, ssl.SSLContext)
    assert got.verify_mode == ssl.CERT_REQUIRED and got.check_hostname
    assert any("syncd test CA" in str(c.get("subject")) for c in got.get_ca_certs())


def test_default_bundle_skip_verify_and_plain_http(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    default = store("https://vault.example:8200")._bulk._ssl_like_requests()
    assert isinstance(default, ssl.SSLContext) and default.verify_mode == ssl.CERT_REQUIRED
    skip = store("https://vault.example:8200", tls_skip_verify=True)._bulk._ssl_like_requests()
    assert isinstance(skip, ssl.SSLContext) and skip.verify_mode == ssl.CERT_NONE and not skip.check_hostname
    assert store("http://127.0.0.1:8200")._bulk._ssl_like_requests() is False


def test_a_proxied_address_keeps_to_hvac(monkeypatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    s = store("https://vault.example:8200")
    s._client.adapter.token = "t-0123456789"  # noqa: S105 - a test value
    s._kv._mount_checked = True
    assert not s._bulk.usable()
    monkeypatch.setenv("NO_PROXY", "vault.example")
    s2 = store("https://vault.example:8200")
    s2._client.adapter.token = "t-0123456789"  # noqa: S105 - a test value
    s2._kv._mount_checked = True
    assert s2._bulk.usable()
