"""Client authentication beyond a shared secret, against the real OAuth server (oidc-provider over TLS).

oidc-provider verifies RFC 7523 assertions (signature with the registered JWKS or the
client secret, iss = client_id, aud, exp, single-use jti) and RFC 8705 tls_client_auth
(the certificate from the TLS connection, issued by the trusted CA, with the registered
subject DN). Every method and key type mints here for real.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.auth_idp import PK_CLIENTS, AuthIdp
from tests.helpers import SYNCD, SyncdProcess, wait_for
from tests.peers.servers import OidcServer

ALL_CLIENTS = [*PK_CLIENTS, "cs-jwt", "foreign", "mtls"]


@pytest.fixture(scope="module")
def auth_idp(tmp_path_factory: pytest.TempPathFactory, peers_installed: None) -> Iterator[tuple[AuthIdp, OidcServer]]:
    material = AuthIdp(tmp_path_factory.mktemp("auth-idp"))
    server = material.server()
    server.start()
    try:
        yield material, server
    finally:
        server.stop()
        server.cleanup()


def _check_connect(cfg_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(cfg_text)
    cfg.chmod(0o600)
    return subprocess.run([SYNCD, "check", "--connect", "-c", str(cfg)], capture_output=True, text=True, timeout=120)


def test_every_method_and_key_type_mints(auth_idp, tmp_path):
    """check --connect mints once per credential: RS256, PS256, ES256 (encrypted key), ES384 (own kid),
    EdDSA, client_secret_jwt, a foreign assertion and tls_client_auth, each accepted by the IdP."""
    material, server = auth_idp
    material.write_foreign_assertion(server.token_url)
    before = {c: server.issued(c) for c in ALL_CLIENTS}
    proc = _check_connect(
        f'[defaults]\ntoken_lifetime = "3s"\n\n{material.credentials_toml(server, tmp_path / "out")}', tmp_path
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert {c: server.issued(c) - before[c] for c in ALL_CLIENTS} == dict.fromkeys(ALL_CLIENTS, 1), out
    for secret in material.secrets:
        assert secret not in out
