"""Client authentication beyond a shared secret, against the real OAuth server (oidc-provider over TLS).

oidc-provider verifies RFC 7523 assertions (signature with the registered JWKS or the
client secret, iss = client_id, aud, exp, single-use jti) and RFC 8705 tls_client_auth
(the certificate from the TLS connection, issued by the trusted CA, with the registered
subject DN). Every method and key type mints here for real.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.config import load_config
from syncd.engine import Engine, RunReport
from tests.auth_idp import PK_CLIENTS, AuthIdp
from tests.helpers import SYNCD, SyncdProcess, wait_for
from tests.peers.pki import Pki
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


def _daemon_config(material: AuthIdp, server: OidcServer, out: Path, names: set[str]) -> str:
    """``syncd run`` config for some of the credentials: 3 s tokens, quick fatal retries."""
    creds = material.credentials_toml(server, out)
    head, *blocks = creds.split("\n[[credentials]]")
    keep = [b for b in blocks if any(f'name = "{n}"' in b for n in names)]
    return (
        '[defaults]\nmin_remaining = "1s"\nretry_min = "0.2s"\nretry_max = "1s"\nfatal_retry = "0.3s"\n'
        'token_lifetime = "3s"\n\n' + head + "".join("\n[[credentials]]" + b for b in keep)
    )


def _mints(d: SyncdProcess, name: str, outcome: str) -> list[dict]:
    return [e for e in d.events("mint") if e.get("credential") == name and e.get("outcome") == outcome]


def test_signed_assertions_are_fresh_on_every_mint(auth_idp, tmp_path):
    """The IdP refuses a reused jti, so minting again and again proves a new assertion each time
    (private_key_jwt with an encrypted P-256 key, and client_secret_jwt)."""
    material, server = auth_idp
    names = {"pk-es256", "cs-jwt"}
    with SyncdProcess(_daemon_config(material, server, tmp_path / "out", names), tmp_path) as d:
        d.wait_http()
        wait_for(lambda: all(len(_mints(d, n, "ok")) >= 3 for n in names), 30, what="three mints each")
        assert d.stop() == 0
    failed = [e for e in d.events("mint") if e.get("outcome") != "ok"]
    assert failed == []
    log = d.log_text()
    for secret in material.secrets:
        assert secret not in log


def test_foreign_assertion_replayed_expired_then_rotated(auth_idp, tmp_path):
    """client_assertion is re-read before every mint: once used, the IdP refuses it as a replay (fatal,
    retried quickly); an expired one is refused before sending; a fresh file is picked up and minting recovers."""
    material, server = auth_idp
    material.write_foreign_assertion(server.token_url)
    with SyncdProcess(_daemon_config(material, server, tmp_path / "out", {"foreign"}), tmp_path) as d:
        d.wait_http()
        wait_for(lambda: _mints(d, "foreign", "ok"), 15, what="first mint with the foreign assertion")
        wait_for(
            lambda: any("invalid_client" in str(e.get("error", "")) for e in _mints(d, "foreign", "fatal")),
            15,
            what="the IdP refusing the replayed assertion",
        )
        assert "client assertion tokens must only be used once" in server.log_text()
        material.write_foreign_assertion(server.token_url, iat=0, lifetime=60)  # expired in 1970
        wait_for(
            lambda: any("client_assertion: the JWT expired" in str(e.get("error", "")) for e in d.events("mint")),
            15,
            what="the expired assertion refused before sending",
        )
        oks = len(_mints(d, "foreign", "ok"))
        material.write_foreign_assertion(server.token_url)
        wait_for(lambda: len(_mints(d, "foreign", "ok")) > oks, 15, what="recovery with the rotated assertion")
        assert d.stop() == 0
    log = d.log_text()
    for secret in material.secrets:
        assert secret not in log


def test_tls_client_certificate_is_reread_when_rotated(auth_idp, tmp_path):
    """tls_client_auth sends only client_id. A certificate the IdP does not trust is refused; once
    cert-manager (here: the test) swaps in a good certificate, the daemon uses it without a restart."""
    material, server = auth_idp
    bad_cert, bad_key = Pki(tmp_path / "other-ca").issue("mtls-client")  # same subject, untrusted issuer
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(bad_cert.read_bytes())
    key.write_bytes(bad_key.read_bytes())
    cfg = _daemon_config(material, server, tmp_path / "out", {"mtls"})
    cfg = cfg.replace(str(material.mtls_cert), str(cert)).replace(str(material.mtls_key), str(key))
    with SyncdProcess(cfg, tmp_path) as d:
        d.wait_http()
        wait_for(lambda: _mints(d, "mtls", "fatal"), 15, what="the untrusted certificate refused")
        assert "client certificate was not verified" in server.log_text()
        for src, dst in ((material.mtls_cert, cert), (material.mtls_key, key)):
            tmp = dst.with_suffix(".new")
            tmp.write_bytes(src.read_bytes())
            tmp.replace(dst)
        wait_for(lambda: _mints(d, "mtls", "ok"), 15, what="a mint with the rotated certificate")
        assert d.stop() == 0


def test_an_assertion_expired_for_the_idp_is_refused_then_a_fresh_one_works(auth_idp, tmp_path):
    """A host clock two minutes slow signs assertions the IdP finds already expired (exp is checked by
    the server, with its own clock): invalid_client, fatal. Once the clock is right, the next mint's
    fresh assertion is accepted. In-process, so the engine's clock can be skewed."""
    material, server = auth_idp
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(_daemon_config(material, server, tmp_path / "out", {"pk-eddsa"}))
    cfg.chmod(0o600)
    skew = [-120.0]
    engine = Engine(load_config(cfg), clock=lambda: time.time() + skew[0])

    async def go() -> tuple[list[RunReport], list[RunReport]]:
        engine.setup()
        try:
            slow = await engine.run_once()
            skew[0] = 0.0
            return slow, await engine.run_once()
        finally:
            await engine.stop(drain_timeout=0)

    issued = server.issued("pk-eddsa")
    slow, fixed = asyncio.run(go())
    assert not slow[0].ok and "invalid_client" in slow[0].errors[0], slow
    assert "jwt expired" in server.log_text(), server.log_text()[-2000:]
    assert fixed[0].ok, fixed
    assert server.issued("pk-eddsa") == issued + 1
