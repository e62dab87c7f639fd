"""``syncd inspect``'s judgement of what a target holds (syncd.audit), with a fixed clock.

The command itself (table, --json, exit codes) runs as a subprocess in
tests/integration/test_observability_inspect.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import SecretStr

from syncd.audit import inspect_targets
from syncd.config import load_config
from syncd.payload import TokenPayload

NOW = 1_800_000_000.0


def payload(credential: str, issued: float, life: float = 300.0, token: str = "tok-0123456789abcdef") -> TokenPayload:
    return TokenPayload(
        credential=credential,
        access_token=SecretStr(token),
        issued_at=issued,
        expires_at=issued + life,
        refresh_after=issued + life / 2,
    )


def config(directory: Path, keys: dict[str, str], extra_stores: dict | None = None):
    stores = {"local": {"type": "file", "directory": str(directory)}, **(extra_stores or {})}
    return load_config(
        data={
            "stores": stores,
            "credentials": [
                {
                    "name": name,
                    "token_url": "http://127.0.0.1:9/token",
                    "client_id": name,
                    "client_secret": {"env": "UNUSED"},
                    "targets": [{"store": store, "key": key}],
                }
                for name, target in keys.items()
                for store, key in [target.split(":", 1)]
            ],
        }
    )


async def test_every_status(tmp_path):
    (tmp_path / "fresh.json").write_text(payload("fresh", NOW - 60).to_json())
    (tmp_path / "stale.json").write_text(payload("stale", NOW - 240).to_json())  # refresh_after was 90 s ago
    (tmp_path / "expired.json").write_text(payload("expired", NOW - 400).to_json())
    (tmp_path / "corrupt.json").write_text('{"version": 1, "credential": "corrupt", "access_tok')
    edited = payload("edited", NOW - 10).to_dict()
    edited["access_token"] = "tok-someone-changed-this"
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    (tmp_path / "foreign.json").write_text(payload("someone-else", NOW - 10).to_json())
    cfg = config(
        tmp_path,
        {
            "fresh": "local:fresh.json",
            "stale": "local:stale.json",
            "expired": "local:expired.json",
            "corrupt": "local:corrupt.json",
            "edited": "local:edited.json",
            "foreign": "local:foreign.json",
            "missing": "local:missing.json",
            "broken": "nowhere:broken",
        },
        {"nowhere": {"type": "no-such-store-type"}},
    )
    reports = {r.credential: r for r in await inspect_targets(cfg, now=NOW)}
    got = {name: r.status for name, r in reports.items()}
    assert got == {
        "fresh": "fresh",
        "stale": "stale",
        "expired": "expired",
        "corrupt": "unparseable",
        "edited": "unparseable",
        "foreign": "foreign",
        "missing": "missing",
        "broken": "error",
    }
    ok = {name for name, r in reports.items() if r.ok}
    assert ok == {"fresh", "stale"}, "stale is a warning, everything else a problem"

    fresh = reports["fresh"]
    assert fresh.fingerprint == payload("fresh", NOW - 60).fingerprint
    assert fresh.remaining == 240 and fresh.remaining_fraction == 0.8
    assert fresh.as_dict()["expires_at"] == "2027-01-15T08:04:00.000Z"
    assert fresh.problem is None and fresh.warning is None

    assert "past its refresh time" in reports["stale"].warning
    assert reports["expired"].problem == "expired 100s ago: rotation has stopped"
    assert reports["expired"].remaining == -100
    assert reports["corrupt"].problem.startswith("unparseable: ")
    assert "fingerprint does not match" in reports["edited"].problem
    assert reports["foreign"].problem == "written by a different credential ('someone-else')"
    assert reports["foreign"].fingerprint is not None  # what is there is still described
    assert reports["missing"].problem == "missing: nothing stored at this key"
    assert "no-such-store-type" in reports["broken"].problem
    for r in reports.values():
        assert "tok-" not in json.dumps(r.as_dict()), "a report never shows a token"


async def test_raw_target_is_judged_by_its_sidecar(tmp_path):
    from syncd.stores.file import FileStore

    cfg = load_config(
        data={
            "stores": {"local": {"type": "file", "directory": str(tmp_path)}},
            "credentials": [
                {
                    "name": "calm",
                    "token_url": "http://127.0.0.1:9/token",
                    "client_id": "calm",
                    "client_secret": {"env": "UNUSED"},
                    "targets": [{"store": "local", "key": "calm.token", "format": "raw"}],
                }
            ],
        }
    )
    store = FileStore.from_config("local", cfg.stores["local"])
    await store.write("calm.token", payload("calm", NOW - 60), target=cfg.credentials[0].targets[0])
    (report,) = await inspect_targets(cfg, now=NOW)
    assert report.status == "fresh" and report.remaining == 240
    FileStore.sidecar_for(tmp_path / "calm.token").unlink()
    (report,) = await inspect_targets(cfg, now=NOW)
    assert report.status == "unparseable" and "sidecar" in report.problem
