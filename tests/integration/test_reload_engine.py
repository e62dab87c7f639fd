"""Engine.reload against the real OAuth server: a new secret value behind an unchanged reference."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

from syncd import logs
from syncd.config import load_config
from syncd.engine import Engine


def config(idp: Any, out: Path, secret: Path) -> Any:
    return load_config(
        data={
            "daemon": {"listen": "127.0.0.1:0"},
            "defaults": {"token_lifetime": 3.0, "refresh_at": 0.9, "jitter": 0, "min_remaining": 0.2},
            "stores": {"local": {"type": "file", "directory": str(out)}},
            "credentials": [
                {
                    "name": "calm",
                    "token_url": idp.token_url,
                    "client_id": "calm",
                    "client_secret": {"file": str(secret)},
                    "scopes": ["cards:read"],
                    "targets": [{"store": "local", "key": "calm.json"}],
                }
            ],
        }
    )


async def test_reload_after_the_secret_file_changed_mints_at_once(oidc_server, tmp_path):
    """The same config with another value in the secret file: the reload mints with it right away
    (here a wrong one, so oidc-provider answers invalid_client) and keeps serving the held token."""
    buf = io.StringIO()
    logs.configure("info", "json", stream=buf)
    secret = tmp_path / "calm.secret"
    secret.write_text("calm-secret-0123456789")
    secret.chmod(0o600)
    engine = Engine(config(oidc_server, tmp_path, secret))
    await engine.start()
    try:
        deadline = time.monotonic() + 15
        st = engine.credentials["calm"]
        while not (st.token is not None and st.token.refresh_after - time.time() >= 1.5 and not st.running):
            assert time.monotonic() < deadline, "a freshly minted token"
            await asyncio.sleep(0.02)
        held = st.token
        secret.write_text("rotated-secret-0123456789")
        summary = await engine.reload(config(oidc_server, tmp_path, secret))
        assert summary["reminted"] == ["calm"]
        st = engine.credentials["calm"]
        while st.last_mint_outcome != "fatal":
            assert time.monotonic() < deadline + 10, "a mint with the new secret"
            await asyncio.sleep(0.02)
        assert st.last_attempt is not None and st.last_attempt < held.refresh_after, "not at the next refresh"
        assert st.last_error is not None and st.last_error.get("error") == "invalid_client"
        assert st.token is not None and st.token.fingerprint == held.fingerprint, "the held token is still served"
    finally:
        await engine.stop()
        logs.configure("info", "json", stream=sys.__stderr__)
    events = [json.loads(line) for line in buf.getvalue().splitlines() if line.startswith("{")]
    (changed,) = [e for e in events if e["event"] == "identity_changed"]
    assert changed["credential"] == "calm" and "client secret" in changed["changed"][0]
    assert "rotated-secret" not in buf.getvalue() and "calm-secret-0123456789" not in buf.getvalue()
