"""Shared pytest fixtures: the real peer servers and the fault-injecting FakeIdP.

Peers are started lazily by the fixtures that need them, so unit tests never
pay for them. A peer that cannot start makes the test error (not skip) with the
tail of the peer's log in the message. Set ``SYNCD_KEEP_PEER_LOGS=1`` to keep
the peers' temporary directories (logs) after the run.

Fixtures
    peers_installed   session   runs tests/peers/install.sh once (npm ci if needed, binary checks)
    oidc_clients      session   list[OidcClient] registered at oidc_server
    oidc_server       session   OidcServer(ttl=3, clients=oidc_clients)
    moto_server       session   MotoServer
    openbao           function  OpenBaoServer, fresh and empty for each test
    openbao_session   session   OpenBaoServer shared by the session
    fake_idp          function  FakeIdP, started, no client check, default ok()
    aws_env           function  fake AWS credentials and region in the environment

A skipped or xfailed test fails the run unless tests/skip_allowlist.txt lists it
with the reason (tests/skip_guard.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests import skip_guard
from tests.peers.fake_idp import FakeIdP
from tests.peers.servers import (
    MotoServer,
    OidcClient,
    OidcServer,
    OpenBaoServer,
    PeerProcess,
    ensure_installed,
)

OIDC_TTL = 3

OIDC_CLIENTS: list[OidcClient] = [
    OidcClient("calm", "calm-secret-0123456789", "cards:read cards:write"),
    OidcClient("card", "card-secret-0123456789", "cards:read cards:write"),
    OidcClient("extra1", "extra1-secret-0123456789", "cards:read"),
    OidcClient("extra2", "extra2-secret-0123456789", "cards:read"),
    OidcClient("extra3", "extra3-secret-0123456789", "cards:read"),
]


def pytest_configure(config: pytest.Config) -> None:
    """Fail the run on any skip or xfail not in tests/skip_allowlist.txt (see tests/skip_guard.py)."""
    skip_guard.register(config)


def _dispose(peer: PeerProcess) -> None:
    if os.environ.get("SYNCD_KEEP_PEER_LOGS"):
        peer.stop()
    else:
        peer.cleanup()


@pytest.fixture(scope="session")
def peers_installed() -> None:
    """Make sure the peers' dependencies are present (once per session)."""
    ensure_installed()


@pytest.fixture(scope="session")
def oidc_clients() -> list[OidcClient]:
    return list(OIDC_CLIENTS)


@pytest.fixture(scope="session")
def oidc_server(peers_installed: None, oidc_clients: list[OidcClient]) -> Iterator[OidcServer]:
    """oidc-provider issuing opaque client-credentials tokens that live 3 s."""
    server = OidcServer(ttl=OIDC_TTL, clients=oidc_clients)
    server.start()
    yield server
    _dispose(server)


@pytest.fixture(scope="session")
def moto_server(peers_installed: None) -> Iterator[MotoServer]:
    """moto_server on 127.0.0.1; call ``.reset()`` to drop its state."""
    server = MotoServer()
    server.start()
    yield server
    _dispose(server)


@pytest.fixture
def openbao(peers_installed: None) -> Iterator[OpenBaoServer]:
    """A fresh in-memory OpenBao dev server for one test (root token ``root-test-token``)."""
    server = OpenBaoServer()
    server.start()
    yield server
    _dispose(server)


@pytest.fixture(scope="session")
def openbao_session(peers_installed: None) -> Iterator[OpenBaoServer]:
    """One OpenBao dev server for the whole session; tests must not rely on it being empty."""
    server = OpenBaoServer()
    server.start()
    yield server
    _dispose(server)


@pytest.fixture
def fake_idp() -> Iterator[FakeIdP]:
    """A started FakeIdP; script it with ``fake_idp.script([...])``."""
    idp = FakeIdP()
    idp.start()
    yield idp
    idp.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake AWS credentials and region, so boto3 never reads real ones."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
