"""``syncd run`` against the real OAuth server (oidc-provider: 3 s tokens, 60 s for the restart test) with file targets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.payload import TokenPayload
from tests.helpers import SyncdProcess, wait_for
from tests.peers.servers import OidcServer

LONG_TTL = 60


def _config(idp, out: Path, secret: str = "calm-secret-0123456789", auth: str = "client_secret_post") -> str:
    return f"""
[defaults]
min_remaining = "1s"
retry_min = "0.2s"
retry_max = "1s"
token_lifetime = "3s"

[stores.local]
type = "file"
directory = "{out}"

[[credentials]]
name = "calm"
token_url = "{idp.token_url}"
client_id = "calm"
client_secret = {{ env = "CALM_SECRET" }}
auth_method = "{auth}"
scopes = ["cards:read"]
targets = [
  {{ store = "local", key = "calm.json" }},
  {{ store = "local", key = "raw/calm.token", format = "raw" }},
]
"""


def test_file_target_stays_fresh_for_20s(oidc_server, tmp_path):
    """A reader polling every 100 ms never sees an expired token, and always >= 30 % lifetime left."""
    out = tmp_path / "out"
    issued_before = oidc_server.issued("calm")
    with SyncdProcess(_config(oidc_server, out), tmp_path, env={"CALM_SECRET": "calm-secret-0123456789"}) as d:
        d.wait_http()
        target, raw_target = out / "calm.json", out / "raw" / "calm.token"
        # The two targets are written concurrently: the JSON one can land before the raw one.
        wait_for(lambda: target.exists() and raw_target.exists(), 10, what="first write of both targets")
        seen: dict[str, float] = {}
        reads = 0
        min_fraction = 1.0
        deadline = time.time() + 20
        # At least 20 s and 150 reads: a loaded machine reads slower, so it runs longer rather
        # than failing on the count; the hard stop keeps a stuck read from hanging.
        hard_stop = deadline + 40
        while (time.time() < deadline or reads < 150) and time.time() < hard_stop:
            payload = TokenPayload.from_json(target.read_text(), source=str(target))
            now = time.time()
            reads += 1
            assert not payload.expired(now), f"expired token read: {payload.public_dict()}"
            fraction = payload.remaining_fraction(now)
            min_fraction = min(min_fraction, fraction)
            assert fraction >= 0.30, f"only {fraction:.0%} of the lifetime left: {payload.public_dict()}"
            assert payload.credential == "calm" and payload.scope == "cards:read"
            seen.setdefault(payload.fingerprint, now)
            raw = raw_target.read_text()
            assert raw.count(".") == 0 and len(raw) > 20 and "{" not in raw
            time.sleep(0.1)
        assert d.stop() == 0
    # 3 s tokens refreshed at half-life: about one rotation every 1.5 s.
    assert len(seen) >= 10, f"only {len(seen)} rotations in 20 s"
    assert reads >= 150
    minted = oidc_server.issued("calm") - issued_before
    assert minted == len(d.events("mint")), "every IdP issue corresponds to one logged mint"
    assert all(e["outcome"] == "ok" for e in d.events("mint"))
    assert (out / "calm.json").stat().st_mode & 0o777 == 0o600


@pytest.fixture(scope="module")
def long_oidc_server(peers_installed, oidc_clients) -> Iterator[OidcServer]:
    """The same real server, issuing 60 s tokens: a restart lands well inside the adoption window."""
    server = OidcServer(ttl=LONG_TTL, clients=oidc_clients)
    server.start()
    yield server
    server.cleanup()


def test_basic_auth_and_restart_adopts_stored_token(long_oidc_server, tmp_path):
    """client_secret_basic works against the real server; a restart adopts the fresh stored token.

    The tokens live 60 s and are refreshed at half-life, so the stored token is fresh for 30 s
    after it was issued: far longer than a stop and a start, even on a loaded machine. If the
    second start still comes after that point, the test fails instead of passing unverified.
    """
    out = tmp_path / "out"
    cfg = _config(long_oidc_server, out, auth="client_secret_basic").replace(
        'token_lifetime = "3s"', f'token_lifetime = "{LONG_TTL}s"\nrefresh_at = 0.5\njitter = 0'
    )
    env = {"CALM_SECRET": "calm-secret-0123456789"}
    with SyncdProcess(cfg, tmp_path, env=env) as d:
        d.wait_http()
        wait_for(lambda: (out / "calm.json").exists(), 10, what="first write")
        assert d.stop() == 0
    stored = TokenPayload.from_json((out / "calm.json").read_text())
    assert stored.expires_at - stored.issued_at == pytest.approx(LONG_TTL, abs=2)
    issued_before = long_oidc_server.issued("calm")
    with SyncdProcess(cfg, tmp_path, env=env, name="second") as d2:
        d2.wait_http()
        started = wait_for(lambda: d2.events("started"), 10, what="started event")[0]
        started_at = time.time()
        assert d2.stop() == 0
    assert started_at < stored.refresh_after, "the restart took longer than the token's fresh window"
    assert started["adopted"] == 1
    (adopted,) = d2.events("adopted")
    assert adopted["fingerprint"] == stored.fingerprint
    assert not d2.events("mint"), "an adopted token is not minted again"
    assert long_oidc_server.issued("calm") == issued_before
    assert TokenPayload.from_json((out / "calm.json").read_text()).fingerprint == stored.fingerprint


def test_wrong_secret_is_fatal_and_not_hammered(oidc_server, tmp_path):
    """401 invalid_client from the real server: fatal state, retried only at fatal_retry pace."""
    out = tmp_path / "out"
    cfg = _config(oidc_server, out).replace('retry_max = "1s"', 'retry_max = "1s"\nfatal_retry = "4s"')
    with SyncdProcess(cfg, tmp_path, env={"CALM_SECRET": "wrong-secret-value"}) as d:
        d.wait_http()
        time.sleep(6)
        status = d.get("/status").json()["credentials"][0]
        ready = d.get("/readyz")
        assert d.stop() == 0
    mints = d.events("mint")
    assert 1 <= len(mints) <= 3, f"{len(mints)} attempts in 6 s with fatal_retry=4s (+-10 %)"
    assert all(m["outcome"] == "fatal" for m in mints)
    assert mints[0]["error_code"] in ("invalid_client", "unauthorized_client")
    assert status["state"] == "fatal"
    assert status["last_error"]["kind"] == "fatal"
    assert ready.status_code == 503 and ready.json()["not_ready"][0]["credential"] == "calm"
    assert not (out / "calm.json").exists()
    assert "wrong-secret-value" not in d.log_text()
