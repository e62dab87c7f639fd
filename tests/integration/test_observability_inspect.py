"""``syncd inspect`` as a CronJob runs it: a subprocess reading a file store, no daemon."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from pydantic import SecretStr

from syncd.payload import TokenPayload
from tests.helpers import SYNCD

ENV = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1"}


def payload(credential: str, issued: float, life: float = 300.0) -> TokenPayload:
    return TokenPayload(
        credential=credential,
        access_token=SecretStr(f"tok-{credential}-{issued:.0f}-0123456789"),
        issued_at=issued,
        expires_at=issued + life,
        refresh_after=issued + life / 2,
    )


def write_config(path: Path, directory: Path, names: list[str]) -> Path:
    creds = "\n".join(
        f"""
[[credentials]]
name = "{n}"
token_url = "http://127.0.0.1:9/token"
client_id = "{n}"
client_secret = {{ env = "NOT_NEEDED_BY_INSPECT" }}
targets = [{{ store = "local", key = "{n}.json" }}]
"""
        for n in names
    )
    path.write_text(f'[stores.local]\ntype = "file"\ndirectory = "{directory}"\n{creds}')
    path.chmod(0o600)
    return path


def inspect(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SYNCD, "inspect", "-c", str(cfg), *args], capture_output=True, text=True, env=ENV, timeout=60
    )


def test_fresh_expired_corrupt_missing_foreign(tmp_path):
    store = tmp_path / "tokens"
    store.mkdir()
    now = time.time()
    fresh = payload("calm", now - 30)
    (store / "calm.json").write_text(fresh.to_json())
    (store / "card.json").write_text(payload("card", now - 400).to_json())  # expired 100 s ago
    (store / "extra1.json").write_text('{"version": 1, "credential": "extra1", "access_token": "tok-')  # cut short
    (store / "extra3.json").write_text(payload("calm", now - 30).to_json())  # another credential's token
    cfg = write_config(tmp_path / "syncd.toml", store, ["calm", "card", "extra1", "extra2", "extra3"])

    table = inspect(cfg)
    assert table.returncode == 1, table.stdout + table.stderr
    rows = {line.split("│")[1].strip(): line for line in table.stdout.splitlines() if line.count("│") >= 7}
    assert "fresh" in rows["calm"] and fresh.fingerprint in rows["calm"]
    assert "expired" in rows["card"] and "rotation has stopped" in rows["card"]
    assert "unparseable" in rows["extra1"]
    assert "missing" in rows["extra2"]
    assert "foreign" in rows["extra3"] and "written by a different credential ('calm')" in rows["extra3"]
    assert "1 of 5 targets ok" in table.stdout

    doc = json.loads(inspect(cfg, "--json").stdout)
    by_name = {t["credential"]: t for t in doc["targets"]}
    assert {n: t["status"] for n, t in by_name.items()} == {
        "calm": "fresh",
        "card": "expired",
        "extra1": "unparseable",
        "extra2": "missing",
        "extra3": "foreign",
    }
    assert doc["problems"] == 4 and doc["ok"] is False
    calm = by_name["calm"]
    assert calm["problem"] is None and calm["fingerprint"] == fresh.fingerprint
    assert calm["target"] == "local:calm.json"
    assert 260 < calm["remaining_seconds"] <= 270 and 0.86 < calm["remaining_fraction"] <= 0.9
    assert by_name["card"]["remaining_seconds"] < 0
    assert "tok-" not in json.dumps(doc), "inspect never prints a token"


def test_exit_0_when_every_target_is_fresh_and_strict_counts_stale(tmp_path):
    store = tmp_path / "tokens"
    store.mkdir()
    now = time.time()
    (store / "calm.json").write_text(payload("calm", now - 10).to_json())
    cfg = write_config(tmp_path / "syncd.toml", store, ["calm"])
    result = inspect(cfg, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["ok"] is True

    # valid, but 100 s past its refresh time: a warning, a problem only with --strict
    (store / "calm.json").write_text(payload("calm", now - 250).to_json())
    relaxed = inspect(cfg)
    assert relaxed.returncode == 0 and "stale" in relaxed.stdout and "rotation is late" in relaxed.stdout
    assert inspect(cfg, "--strict").returncode == 1


def test_config_error_exits_2(tmp_path):
    cfg = tmp_path / "syncd.toml"
    cfg.write_text('[stores.local]\ntype = "file"\ndirectory = "/tmp"\nrefesh_at = 0.5\n')
    cfg.chmod(0o600)
    result = inspect(cfg)
    assert result.returncode == 2 and "refesh_at" in result.stderr
