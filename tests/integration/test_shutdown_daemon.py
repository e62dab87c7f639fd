"""SIGTERM never hangs on a store call that does not return: ``syncd run`` as a real process.

The store's server is real and is frozen with SIGSTOP once the daemon has written
to it, so the next write's connection is accepted by the kernel and then never
answered: a stopped Vault (OpenBao) hangs an async HTTP call, a stopped AWS
endpoint (moto) hangs a boto3 call in a worker thread, which Python would join
at exit. Both with the store's own timeout far beyond drain_timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.helpers import SyncdProcess, wait_for
from tests.peers.servers import MotoServer, OidcServer, PeerProcess

SECRETS = {"CALM_SECRET": "calm-secret-0123456789"}
DRAIN = 1.0


def config(idp: OidcServer, store: str, key: str) -> str:
    return f"""
[daemon]
listen = "127.0.0.1:{{port}}"
log_format = "json"
drain_timeout = "{DRAIN:g}s"

[defaults]
token_lifetime = "3s"
min_remaining = "1s"
retry_min = "0.2s"
retry_max = "1s"
{store}
[[credentials]]
name = "calm"
token_url = "{idp.token_url}"
client_id = "calm"
client_secret = {{ env = "CALM_SECRET" }}
scopes = ["cards:read"]
targets = [{{ store = "remote", key = "{key}" }}]
"""


@pytest.fixture
def fresh_moto(peers_installed: None) -> Iterator[MotoServer]:
    """A moto server of this test's own: it gets frozen, which the session's must not be."""
    server = MotoServer()
    server.start()
    yield server
    server.cleanup()


def frozen(peer: PeerProcess) -> None:
    # The peer's pid is its guard's, which leads the server's own process group.
    assert peer.pid is not None
    os.killpg(peer.pid, signal.SIGSTOP)


def thawed(peer: PeerProcess) -> None:
    if peer.pid is not None:
        os.killpg(peer.pid, signal.SIGCONT)


def sigterm_while_a_write_hangs(d: SyncdProcess, peer: PeerProcess) -> tuple[float, int]:
    """Freeze ``peer`` after the first write, wait for the next mint (its write then hangs), SIGTERM."""
    d.wait_http()

    def ok_writes() -> int:
        return len([e for e in d.events("write") if e.get("outcome") == "ok"])

    wait_for(ok_writes, 20, what="a first write")
    frozen(peer)
    try:
        mints, written = len(d.events("mint")), ok_writes()
        wait_for(lambda: len(d.events("mint")) > mints, 10, what="a mint whose write will hang")
        time.sleep(0.3)  # the write call has reached the frozen server
        assert ok_writes() == written, "a write got through to the frozen server"
        sent = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.proc is not None
        try:
            code = d.proc.wait(timeout=DRAIN + 10)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"syncd still running {DRAIN + 10:g}s after SIGTERM") from None
        return time.monotonic() - sent, code
    finally:
        thawed(peer)


def assert_abandoned(d: SyncdProcess, target: str) -> None:
    (cut,) = d.events("drain_timeout")
    assert cut["credentials"] == ["calm"] and cut["bound"] == DRAIN
    (abandoned,) = d.events("write_abandoned")
    assert abandoned["level"] == "warning" and abandoned["credential"] == "calm" and abandoned["target"] == target
    assert abandoned["fingerprint"].startswith("sha256:")
    assert d.events("stopped")
    assert "calm-secret-0123456789" not in d.log_text()


def test_sigterm_exits_while_a_vault_write_hangs(openbao, oidc_server, tmp_path):
    """Async HTTP to a frozen OpenBao: cut off at drain_timeout, named, and the process exits 0."""
    token_file = tmp_path / "bao.token"
    token_file.write_text(openbao.root_token)
    token_file.chmod(0o600)
    store = f"""
[stores.remote]
type = "vault"
url = "{openbao.url}"
mount = "secret"
timeout = "60s"
auth = {{ method = "token", token_file = "{token_file}" }}
"""
    with SyncdProcess(config(oidc_server, store, "vgs/calm"), tmp_path, env=SECRETS) as d:
        took, code = sigterm_while_a_write_hangs(d, openbao)
    assert code == 0
    assert took < DRAIN + 3, f"exit took {took:.1f}s with drain_timeout {DRAIN:g}s"
    assert_abandoned(d, "remote:vgs/calm")


def test_sigterm_exits_while_a_thread_blocked_in_boto3_never_returns(fresh_moto, oidc_server, tmp_path, aws_env):
    """boto3 to a frozen AWS endpoint blocks a worker thread for its read_timeout (60 s): the
    daemon names the abandoned write and the thread, and exits 0 without joining it."""
    store = f"""
[stores.remote]
type = "aws-ssm"
region = "eu-west-1"
endpoint_url = "{fresh_moto.endpoint_url}"
max_writes_per_second = 1000
read_timeout = "60s"
max_attempts = 1
"""
    key = "/vgs/shutdown/calm"
    with SyncdProcess(config(oidc_server, store, key), tmp_path, env=SECRETS) as d:
        took, code = sigterm_while_a_write_hangs(d, fresh_moto)
    assert code == 0
    assert took < DRAIN + 3, f"exit took {took:.1f}s with drain_timeout {DRAIN:g}s"
    assert_abandoned(d, f"remote:{key}")
    (threads,) = d.events("threads_abandoned")
    assert threads["level"] == "warning" and any(t.startswith("syncd-remote") for t in threads["threads"])
