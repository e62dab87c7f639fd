"""SIGHUP applies at once: ``syncd run`` as a real process against the real OAuth server.

oidc-provider issues 3 s tokens; with ``refresh_at = 0.9`` and no jitter a token
is refreshed 2.7 s after it was issued. Each test sends SIGHUP while the held
token still has at least 1.5 s to go before its refresh, so "at once" and "at
the next refresh" are told apart by the token's own times, not by a stopwatch.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from syncd.payload import TokenPayload
from tests.helpers import SyncdProcess, wait_for

SECRETS = {"CALM_SECRET": "calm-secret-0123456789"}


def config(idp_url: str, out: Path, *, scopes: list[str], keys: list[str]) -> str:
    scope_list = ", ".join(f'"{s}"' for s in scopes)
    targets = ", ".join(f'{{ store = "local", key = "{k}" }}' for k in keys)
    return f"""
[defaults]
token_lifetime = "3s"
refresh_at = 0.9
jitter = 0
min_remaining = "0.2s"
retry_min = "0.2s"
retry_max = "1s"

[stores.local]
type = "file"
directory = "{out}"

[[credentials]]
name = "calm"
token_url = "{idp_url}"
client_id = "calm"
client_secret = {{ env = "CALM_SECRET" }}
scopes = [{scope_list}]
targets = [{targets}]
"""


def read(path: Path) -> TokenPayload | None:
    try:
        return TokenPayload.from_json(path.read_text())
    except (OSError, ValueError):
        return None


def token_far_from_refresh(path: Path) -> TokenPayload:
    """A token in ``path`` whose refresh is still at least 1.5 s away (waiting for a rotation if not)."""

    def ok() -> TokenPayload | None:
        p = read(path)
        return p if p is not None and p.refresh_after - time.time() >= 1.5 else None

    result: TokenPayload = wait_for(ok, 15, interval=0.02, what=f"a fresh token in {path.name}")
    return result


def test_sighup_scope_change_mints_a_new_token_at_once(oidc_server, tmp_path):
    out = tmp_path / "out"
    text = config(oidc_server.token_url, out, scopes=["cards:read"], keys=["calm.json"])
    with SyncdProcess(text, tmp_path, env=SECRETS) as d:
        d.wait_http()
        before = token_far_from_refresh(out / "calm.json")
        assert before.scope == "cards:read"
        d.write_config(config(oidc_server.token_url, out, scopes=["cards:read", "cards:write"], keys=["calm.json"]))
        d.signal(signal.SIGHUP)

        def rescoped() -> TokenPayload | None:
            p = read(out / "calm.json")
            return p if p is not None and p.scope == "cards:read cards:write" else None

        after: TokenPayload = wait_for(rescoped, 15, what="a token with the new scopes")
        assert d.stop() == 0
    assert after.fingerprint != before.fingerprint
    assert after.issued_at < before.refresh_after, "minted at the old token's refresh, not at the reload"
    (changed,) = d.events("identity_changed")
    assert changed["credential"] == "calm" and changed["changed"] == ["scopes"]
    (reloaded,) = d.events("reloaded")
    assert reloaded["reminted"] == ["calm"] and reloaded["changed"] == ["calm"]
    assert "calm-secret-0123456789" not in d.log_text()


def test_sighup_target_added_gets_the_current_token_and_removed_one_is_left_alone(oidc_server, tmp_path):
    out = tmp_path / "out"
    url = oidc_server.token_url
    with SyncdProcess(config(url, out, scopes=["cards:read"], keys=["a.json", "b.json"]), tmp_path, env=SECRETS) as d:
        d.wait_http()
        wait_for(lambda: read(out / "b.json"), 15, what="b.json written")
        current = token_far_from_refresh(out / "a.json")
        d.write_config(config(url, out, scopes=["cards:read"], keys=["a.json", "c.json"]))
        d.signal(signal.SIGHUP)
        added: TokenPayload = wait_for(lambda: read(out / "c.json"), 15, what="c.json written")
        assert added.fingerprint == current.fingerprint, "the new target gets the token held, no new mint"
        assert added.issued_at < current.refresh_after
        left = read(out / "b.json")
        assert left is not None
        # two rotations later the removed target still holds what it held at the reload
        seen: set[str] = set()

        def rotated_twice() -> bool:
            p = read(out / "a.json")
            if p is not None and p.fingerprint != current.fingerprint:
                seen.add(p.fingerprint)
            return len(seen) >= 2

        wait_for(rotated_twice, 20, what="two rotations after the reload")
        assert d.stop() == 0
    assert (out / "b.json").exists(), "a removed target is not deleted"
    assert read(out / "b.json") == left
    (reloaded,) = d.events("reloaded")
    assert reloaded["changed"] == ["calm"] and reloaded["reminted"] == []
    sighup = next(i for i, e in enumerate(d.events()) if e.get("event") == "reloaded")
    later = [e for e in d.events()[sighup:] if e.get("event") == "write"]
    assert later and all(e["target"] != "local:b.json" for e in later)
    assert not d.events("identity_changed")
