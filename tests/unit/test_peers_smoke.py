"""Fast checks of the test-peer tooling that need no server and no network."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from datetime import UTC, datetime

import pytest

from tests.peers import fake_idp
from tests.peers.servers import INSTALL_SCRIPT, OIDC_DIR, OIDC_SCRIPT, OidcClient, OidcServer, OpenBaoServer


def test_oidc_provider_is_pinned_exactly_and_locked() -> None:
    package = json.loads((OIDC_DIR / "package.json").read_text())
    pin = package["dependencies"]["oidc-provider"]
    assert pin[0].isdigit(), f"oidc-provider must be pinned to an exact version, got {pin!r}"
    lock = json.loads((OIDC_DIR / "package-lock.json").read_text())
    assert lock["packages"][""]["dependencies"]["oidc-provider"] == pin
    assert lock["packages"]["node_modules/oidc-provider"]["version"] == pin


def test_install_script_is_valid_bash() -> None:
    assert INSTALL_SCRIPT.stat().st_mode & 0o111, "install.sh must be executable"
    subprocess.run(["bash", "-n", str(INSTALL_SCRIPT)], check=True)


def test_oidc_server_script_parses() -> None:
    node = shutil.which("node")
    assert node is not None, "node is not installed: run tests/peers/install.sh (make setup), which installs it"
    subprocess.run([node, "--check", str(OIDC_SCRIPT)], check=True)


def test_oidc_server_urls_and_clients_file() -> None:
    server = OidcServer(ttl=5, clients=[{"client_id": "a", "client_secret": "b"}], port=12345)
    try:
        assert server.token_url == "http://127.0.0.1:12345/auth/realms/vgs/protocol/openid-connect/token"
        assert server.introspection_url.endswith("/protocol/openid-connect/token/introspect")
        assert server.revocation_url.endswith("/protocol/openid-connect/revoke")
        assert json.loads(server.clients_file.read_text()) == [
            {"client_id": "a", "client_secret": "b", "scope": "cards:read cards:write"}
        ]
        assert server.client("a") == OidcClient("a", "b")
        assert not server.running
    finally:
        server.cleanup()
    with pytest.raises(ValueError):
        OidcServer(clients=[])


def test_openbao_env_drops_vault_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_TOKEN", "x")
    monkeypatch.setenv("BAO_ADDR", "http://example.invalid")
    server = OpenBaoServer(port=18200)
    try:
        env = server._env()
        assert "VAULT_TOKEN" not in env and "BAO_ADDR" not in env
        assert env["HOME"] == str(server.workdir)
        assert "-dev-no-store-token" in server._command()
    finally:
        server.cleanup()


def test_fake_idp_helpers() -> None:
    assert fake_idp.retry_after(503, 7).value == "7"
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert fake_idp.retry_after(429, when).value == "Wed, 02 Jan 2030 03:04:05 GMT"
    assert fake_idp.delay(1).then == fake_idp.ok()
    assert fake_idp.raw(200, "x").body == b"x"
    assert fake_idp._default_error_code(401) == "invalid_client"
    assert fake_idp._default_error_code(502) == "server_error"

    token = fake_idp.make_jwt({"exp": 10, "iat": 7})
    header, payload, signature = token.split(".")
    assert signature == ""
    assert json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))) == {"exp": 10, "iat": 7}


def test_fake_idp_basic_credentials_are_form_urldecoded() -> None:
    encoded = base64.b64encode(b"x+y:s%3Ae%2Bc%25ret").decode()
    assert fake_idp._basic_credentials(f"Basic {encoded}") == ("x y", "s:e+c%ret")
    assert fake_idp._basic_credentials("Bearer abc") is None
    assert fake_idp._basic_credentials("Basic !!!") is None
    assert fake_idp._basic_credentials("Basic " + base64.b64encode(b"no-colon").decode()) is None
