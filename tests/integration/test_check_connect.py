"""`syncd check --connect` against the real OAuth server: a good credential, a wrong secret.

It used to end in "RuntimeError: Event loop is closed" whenever the IdP answered: the
HTTP client opened on the check's event loop was closed from a second one.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers import SYNCD

GOOD = "calm-secret-0123456789"


def _run(oidc_server, tmp_path: Path, secret: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "calm.secret").write_text(secret)
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(
        f"""
[defaults]
token_lifetime = "{oidc_server.ttl}s"

[stores.local]
type = "file"
directory = "{tmp_path / "out"}"

[[credentials]]
name = "calm"
token_url = "{oidc_server.token_url}"
client_id = "calm"
client_secret = {{ file = "{tmp_path / "calm.secret"}" }}
targets = [{{ store = "local", key = "calm.json" }}]
"""
    )
    cfg.chmod(0o600)
    # os.environ, not the inherited environment: readline (loaded by pytest) exports COLUMNS
    # to child processes, and check wraps its lines when COLUMNS is set.
    return subprocess.run(
        [SYNCD, "check", "--connect", "-c", str(cfg)], capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )


def test_connect_with_a_good_credential_exits_0(oidc_server, tmp_path):
    proc = _run(oidc_server, tmp_path, GOOD)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "Event loop is closed" not in proc.stderr, proc.stderr
    assert "ok: configuration is valid" in proc.stdout
    assert GOOD not in proc.stdout + proc.stderr


def test_connect_with_a_wrong_secret_says_so_without_a_traceback(oidc_server, tmp_path):
    proc = _run(oidc_server, tmp_path, "wrong-" + GOOD)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out and "Event loop is closed" not in out, out
    assert "error: calm -> mint: credential 'calm': the IdP rejected the client credentials" in out
    assert "invalid_client" in out and "check client_id, client_secret and auth_method" in out
    assert "1 connection check(s) failed" in proc.stderr
    assert "wrong-" + GOOD not in out
