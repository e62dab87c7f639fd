"""The test peers work for real: each one does what the other integration tests rely on."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus

import boto3
import httpx
import hvac.exceptions
import pytest

from tests.peers.fake_idp import (
    FakeIdP,
    close,
    delay,
    error,
    html,
    ok,
    raw,
    retry_after,
)
from tests.peers.servers import MotoServer, OidcClient, OidcServer, OpenBaoServer, free_port

pytestmark = pytest.mark.integration


def _basic(client_id: str, secret: str) -> str:
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


# --------------------------------------------------------------------------- oidc-provider


def test_oidc_client_secret_post(oidc_server: OidcServer) -> None:
    calm = oidc_server.client("calm")
    r = httpx.post(
        oidc_server.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": calm.client_id,
            "client_secret": calm.client_secret,
            "scope": "cards:read cards:write",
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["expires_in"] == oidc_server.ttl == 3
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "cards:read cards:write"
    assert isinstance(body["access_token"], str) and len(body["access_token"]) >= 32
    assert "refresh_token" not in body


def test_oidc_client_secret_basic(oidc_server: OidcServer) -> None:
    card = oidc_server.client("card")
    r = httpx.post(
        oidc_server.token_url,
        data={"grant_type": "client_credentials", "scope": "cards:read"},
        headers={"Authorization": _basic(card.client_id, card.client_secret)},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["expires_in"] == 3
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "cards:read"


@pytest.mark.parametrize("method", ["post", "basic"])
def test_oidc_wrong_secret_is_invalid_client(oidc_server: OidcServer, method: str) -> None:
    data = {"grant_type": "client_credentials"}
    headers = {}
    if method == "post":
        data |= {"client_id": "calm", "client_secret": "wrong"}
    else:
        headers["Authorization"] = _basic("calm", "wrong")
    r = httpx.post(oidc_server.token_url, data=data, headers=headers)
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


def test_oidc_stats_count_issued_tokens(oidc_server: OidcServer) -> None:
    extra1 = oidc_server.client("extra1")
    before = oidc_server.stats()
    for _ in range(3):
        r = httpx.post(
            oidc_server.token_url,
            data={"grant_type": "client_credentials"},
            auth=(extra1.client_id, extra1.client_secret),
        )
        assert r.status_code == 200, r.text
    httpx.post(oidc_server.token_url, data={"grant_type": "client_credentials"}, auth=("extra1", "nope"))
    after = oidc_server.stats()
    assert oidc_server.issued("extra1") == before["tokens_issued"].get("extra1", 0) + 3
    assert after["total"] == before["total"] + 3
    assert oidc_server.issued("no-such-client") == 0


def test_oidc_revocation_makes_introspection_inactive(oidc_server: OidcServer) -> None:
    c = oidc_server.client("extra2")
    auth = (c.client_id, c.client_secret)
    token = httpx.post(
        oidc_server.token_url, data={"grant_type": "client_credentials", "scope": "cards:read"}, auth=auth
    ).json()["access_token"]

    info = httpx.post(oidc_server.introspection_url, data={"token": token}, auth=auth).json()
    assert info["active"] is True
    assert info["client_id"] == "extra2"
    assert info["scope"] == "cards:read"
    assert info["exp"] - info["iat"] == 3

    r = httpx.post(oidc_server.revocation_url, data={"token": token}, auth=auth)
    assert r.status_code == 200
    assert httpx.post(oidc_server.introspection_url, data={"token": token}, auth=auth).json() == {"active": False}


def test_oidc_own_server_restart_keeps_port(peers_installed: None) -> None:
    clients = [OidcClient("x y", "s:e+c%ret/=", "cards:read")]
    with OidcServer(ttl=7, clients=clients) as server:
        port = server.port
        r = httpx.post(
            server.token_url,
            data={"grant_type": "client_credentials"},
            headers={"Authorization": _basic("x y", "s:e+c%ret/=")},
        )
        assert r.status_code == 200, r.text
        assert r.json()["expires_in"] == 7
        server.restart()
        assert server.port == port
        assert server.issued("x y") == 0  # counters live in the process
        r = httpx.post(
            server.token_url,
            data={"grant_type": "client_credentials", "client_id": "x y", "client_secret": "s:e+c%ret/="},
        )
        assert r.status_code == 200, r.text
        assert server.issued("x y") == 1
    assert not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.post(server.token_url, data={"grant_type": "client_credentials"})
    server.cleanup()


# --------------------------------------------------------------------------- moto_server


def test_moto_secretsmanager_round_trip(moto_server: MotoServer, aws_env: None) -> None:
    sm = boto3.client("secretsmanager", endpoint_url=moto_server.endpoint_url)
    sm.create_secret(Name="vgs/calm", SecretString='{"v": 1}')
    sm.put_secret_value(SecretId="vgs/calm", SecretString='{"v": 2}')
    assert json.loads(sm.get_secret_value(SecretId="vgs/calm")["SecretString"]) == {"v": 2}
    moto_server.reset()
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        sm.get_secret_value(SecretId="vgs/calm")


# --------------------------------------------------------------------------- OpenBao


def test_openbao_kv2_and_restart(openbao: OpenBaoServer) -> None:
    client = openbao.client()
    assert client.is_authenticated()
    client.secrets.kv.v2.create_or_update_secret(path="vgs/calm", secret={"access_token": "t1"})
    read = client.secrets.kv.v2.read_secret_version(path="vgs/calm", raise_on_deleted_version=True)
    assert read["data"]["data"] == {"access_token": "t1"}

    port = openbao.port
    openbao.restart()
    assert openbao.port == port
    client = openbao.client()
    assert client.is_authenticated()
    # Fresh dev server: the old secret is gone, and KV v2 works again.
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret_version(path="vgs/calm", raise_on_deleted_version=True)
    client.secrets.kv.v2.create_or_update_secret(path="vgs/calm", secret={"access_token": "t2"})
    read = client.secrets.kv.v2.read_secret_version(path="vgs/calm", raise_on_deleted_version=True)
    assert read["data"]["data"] == {"access_token": "t2"}


def test_openbao_ignores_parent_vault_env(peers_installed: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:1")
    monkeypatch.setenv("BAO_ADDR", "http://127.0.0.1:1")
    monkeypatch.setenv("VAULT_TOKEN", "bogus")
    with OpenBaoServer(root_token="another-root") as bao:
        assert bao.client().is_authenticated()
        assert not bao.client(token="bogus").is_authenticated()
        assert not (bao.workdir / ".vault-token").exists()
    bao.cleanup()


# --------------------------------------------------------------------------- FakeIdP


def _mint(idp: FakeIdP, **kw: object) -> httpx.Response:
    data = {"grant_type": "client_credentials", "client_id": "calm", "client_secret": "s"}
    return httpx.post(idp.token_url, data=data, **kw)  # type: ignore[arg-type]


def test_fake_idp_default_ok_and_unique_tokens(fake_idp: FakeIdP) -> None:
    bodies = [_mint(fake_idp).json() for _ in range(3)]
    assert all(b["expires_in"] == 3 and b["token_type"] == "Bearer" for b in bodies)
    assert len({b["access_token"] for b in bodies}) == 3
    assert fake_idp.tokens == [b["access_token"] for b in bodies]
    assert fake_idp.count == 3
    t, headers, form = fake_idp.requests[0]
    assert t <= time.time()
    assert form == {"grant_type": "client_credentials", "client_id": "calm", "client_secret": "s"}
    assert headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert fake_idp.last.auth_method == "client_secret_post"


def test_fake_idp_ok_variants(fake_idp: FakeIdP) -> None:
    fake_idp.script(
        [
            ok(ttl=300, token="fixed", token_type="bearer", scope="cards:read", extra={"not-before-policy": 0}),
            ok(include_expires_in=False),
            ok(ttl=5, jwt=True, include_expires_in=False, scope="cards:read"),
            ok(extra={"expires_in": "300"}),
        ]
    )
    assert _mint(fake_idp).json() == {
        "access_token": "fixed",
        "token_type": "bearer",
        "expires_in": 300,
        "scope": "cards:read",
        "not-before-policy": 0,
    }
    assert "expires_in" not in _mint(fake_idp).json()

    body = _mint(fake_idp).json()
    assert "expires_in" not in body
    header_b64, payload_b64, signature = body["access_token"].split(".")
    assert signature == ""
    claims = json.loads(base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4)))
    assert claims["exp"] - claims["iat"] == 5
    assert claims["sub"] == "calm"
    assert claims["scope"] == "cards:read"
    assert json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))["alg"] == "none"

    assert _mint(fake_idp).json()["expires_in"] == "300"
    assert fake_idp.pending == 0


def test_fake_idp_errors_and_pages(fake_idp: FakeIdP) -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    fake_idp.script(
        [
            error(400, "invalid_scope", "scope not allowed"),
            error(503),
            error(500, headers={"X-Trace": "abc"}),
            html(502),
            html(200, "<html>login</html>"),
            retry_after(429, "2"),
            retry_after(503, when),
        ]
    )
    r = _mint(fake_idp)
    assert (r.status_code, r.json()) == (400, {"error": "invalid_scope", "error_description": "scope not allowed"})
    r = _mint(fake_idp)
    assert (r.status_code, r.json()) == (503, {"error": "temporarily_unavailable"})
    r = _mint(fake_idp)
    assert (r.status_code, r.json()["error"], r.headers["x-trace"]) == (500, "server_error", "abc")
    r = _mint(fake_idp)
    assert r.status_code == 502 and r.headers["content-type"].startswith("text/html") and "<html>" in r.text
    r = _mint(fake_idp)
    assert r.status_code == 200 and r.text == "<html>login</html>"
    r = _mint(fake_idp)
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    r = _mint(fake_idp)
    assert r.status_code == 503 and r.headers["retry-after"].endswith(" GMT")
    parsed = datetime.strptime(r.headers["retry-after"], "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
    assert abs((parsed - when).total_seconds()) < 1
    assert _mint(fake_idp).status_code == 200  # back to default


def test_fake_idp_raw_close_and_delay(fake_idp: FakeIdP) -> None:
    big = b"x" * (64 * 1024 + 1)
    fake_idp.script([raw(200, big, {"Content-Type": "application/json"}), raw(200, "not json"), close()])
    r = _mint(fake_idp)
    assert r.status_code == 200 and r.content == big
    r = _mint(fake_idp)
    assert r.text == "not json"
    with pytest.raises(httpx.RemoteProtocolError):
        _mint(fake_idp)

    fake_idp.script([delay(1.5), delay(0.2, then=error(401))])
    with pytest.raises(httpx.ReadTimeout):
        _mint(fake_idp, timeout=0.3)
    started = time.monotonic()
    r = _mint(fake_idp, timeout=5)
    assert r.status_code == 401 and time.monotonic() - started >= 0.2
    assert _mint(fake_idp).status_code == 200


def test_fake_idp_client_check(fake_idp: FakeIdP) -> None:
    fake_idp.clients = {"x y": "s:e+c%ret", "calm": "s"}
    fake_idp.script([error(503)])
    # Wrong secret: 401, and the scripted 503 is not consumed.
    r = httpx.post(
        fake_idp.token_url, data={"grant_type": "client_credentials", "client_id": "calm", "client_secret": "no"}
    )
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")
    r = httpx.post(
        fake_idp.token_url,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": _basic("x y", "s:e+c%ret")},
    )
    assert r.status_code == 503
    assert fake_idp.last.auth_method == "client_secret_basic"
    assert fake_idp.last.client_id == "x y"
    # Basic without form-urlencoding of the secret does not match.
    raw_pair = base64.b64encode(b"x y:s:e+c%ret").decode()
    r = httpx.post(
        fake_idp.token_url, data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {raw_pair}"}
    )
    assert r.status_code in (400, 401)
    assert _mint(fake_idp).status_code == 200
    # Both methods at once, and a wrong grant type, are rejected.
    r = httpx.post(
        fake_idp.token_url,
        data={"grant_type": "client_credentials", "client_secret": "s"},
        headers={"Authorization": _basic("calm", "s")},
    )
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")
    r = httpx.post(fake_idp.token_url, data={"grant_type": "password", "client_id": "calm", "client_secret": "s"})
    assert (r.status_code, r.json()["error"]) == (400, "unsupported_grant_type")


def test_fake_idp_restart_and_wait(fake_idp: FakeIdP) -> None:
    port = fake_idp.port
    fake_idp.stop()
    with pytest.raises(httpx.ConnectError):
        _mint(fake_idp)
    fake_idp.start()
    assert fake_idp.port == port
    assert _mint(fake_idp).status_code == 200
    fake_idp.wait_for_requests(1, timeout=1)  # the refused attempt never arrived
    with pytest.raises(TimeoutError):
        fake_idp.wait_for_requests(5, timeout=0.1)


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port(consecutive=2)
    for p in (port, port + 1):
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))
