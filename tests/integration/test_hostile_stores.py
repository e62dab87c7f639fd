"""Stores that lie: payloads planted in a real OpenBao are never adopted nor spread.

A 10-year token with a valid fingerprint, and a token whose fingerprint was edited, are
planted before the daemon starts (start-up adoption) and while it runs (check-and-set
conflict). The daemon must mint, overwrite them, log why, and never copy them to the file
targets that share the credential. The real OAuth server issues 3 s tokens.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from syncd.payload import TokenPayload, fingerprint, to_rfc3339
from tests.helpers import SyncdProcess, wait_for
from tests.integration.test_vault_daemon import client_secret_file, credential, enable_kv
from tests.peers.servers import OidcServer, OpenBaoServer

pytestmark = pytest.mark.integration

TEN_YEARS = 10 * 365 * 86_400.0


def planted(credential_name: str, token: str, *, life: float, bad_fingerprint: bool = False) -> dict[str, Any]:
    now = time.time()
    doc = TokenPayload.from_dict(
        {
            "credential": credential_name,
            "access_token": token,
            "issued_at": to_rfc3339(now - 5),
            "expires_at": to_rfc3339(now - 5 + life),
            "refresh_after": to_rfc3339(now - 5 + life / 2),
        }
    ).to_dict()
    if bad_fingerprint:
        doc["fingerprint"] = "sha256:" + "0" * 16
    else:
        assert doc["fingerprint"] == fingerprint(token)
    return doc


def config(bao: OpenBaoServer, mount: str, token_file: Path, out: Path, creds: str, verify: str = "auto") -> str:
    return f"""
[daemon]
listen = "127.0.0.1:{{port}}"
log_format = "json"

[defaults]
verify_interval = "{verify}"
refresh_at = 0.4
min_remaining = "1s"
retry_min = "0.2s"
retry_max = "1s"
fatal_retry = "2s"
token_lifetime = "3s"

[stores.bao]
type = "vault"
url = "{bao.url}"
mount = "{mount}"
auth = {{ method = "token", token_file = "{token_file}" }}

[stores.local]
type = "file"
directory = "{out}"

{creds}
"""


class FileWatcher:
    """Reads the file targets every 20 ms and records every token fingerprint seen."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FileWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            for p in self.paths:
                try:
                    self.seen.add(json.loads(p.read_text())["fingerprint"])
                except (OSError, ValueError, KeyError):
                    pass
            self._stop.wait(0.02)


def vault_payload(bao: OpenBaoServer, mount: str, key: str) -> dict[str, Any]:
    r = bao.client().secrets.kv.v2.read_secret_version(path=key, mount_point=mount, raise_on_deleted_version=True)
    data: dict[str, Any] = r["data"]["data"]
    return data


def setup(bao: OpenBaoServer, oidc: OidcServer, tmp_path: Path, verify: str = "auto") -> tuple[str, str, Path]:
    mount = enable_kv(bao, 2)
    token_file = tmp_path / "vault.token"
    token_file.write_text(bao.root_token)
    token_file.chmod(0o600)
    out = tmp_path / "out"
    creds = credential(
        oidc,
        "calm",
        client_secret_file(oidc, "calm", tmp_path),
        '{ store = "bao", key = "vgs/calm" }, { store = "local", key = "calm.json" }',
    ) + credential(
        oidc,
        "card",
        client_secret_file(oidc, "card", tmp_path),
        '{ store = "bao", key = "vgs/card" }, { store = "local", key = "card.json" }',
    )
    return mount, config(bao, mount, token_file, out, creds, verify), out


def test_planted_payloads_refused_at_start_up(
    openbao_session: OpenBaoServer, oidc_server: OidcServer, tmp_path: Path
) -> None:
    """A 10-year payload and an edited-fingerprint one in Vault: minted over, logged, never copied to the files."""
    bao = openbao_session
    mount, cfg, out = setup(bao, oidc_server, tmp_path)
    long_lived = "planted-ten-year-token-0123456789"
    edited = "planted-edited-token-0123456789"
    root = bao.client()
    root.secrets.kv.v2.create_or_update_secret(
        path="vgs/calm", secret=planted("calm", long_lived, life=TEN_YEARS), mount_point=mount
    )
    root.secrets.kv.v2.create_or_update_secret(
        path="vgs/card", secret=planted("card", edited, life=3600, bad_fingerprint=True), mount_point=mount
    )
    bad = {fingerprint(long_lived), fingerprint(edited)}
    with (
        FileWatcher([out / "calm.json", out / "card.json"]) as files,
        SyncdProcess(cfg, tmp_path) as d,
    ):
        d.wait_http(timeout=60)

        def replaced() -> bool:
            return all(
                fingerprint(vault_payload(bao, mount, k)["access_token"]) not in bad for k in ("vgs/calm", "vgs/card")
            )

        wait_for(replaced, 15, what="the planted payloads overwritten in Vault")
        wait_for(lambda: d.get("/readyz").status_code == 200, 15, what="ready")
        time.sleep(1.5)  # a rotation more: nothing brings the planted tokens back
        assert d.stop() == 0
    for key, credential_name in (("vgs/calm", "calm"), ("vgs/card", "card")):
        now_there = TokenPayload.from_dict(vault_payload(bao, mount, key))
        assert now_there.credential == credential_name and now_there.lifetime <= 4.0
    assert files.seen and not files.seen & bad, "a planted token reached a file target"
    refused = [e for e in d.events("adopt_refused") if e["credential"] == "calm"]
    assert refused and refused[0]["target"] == "bao:vgs/calm"
    assert "max_lifetime" in refused[0]["reason"] and refused[0]["level"] == "warning"
    unreadable = [e for e in d.events("adopt_read") if e["credential"] == "card"]
    assert unreadable and unreadable[0]["target"] == "bao:vgs/card"
    assert "fingerprint does not match" in unreadable[0]["error"]
    assert not d.events("adopted"), "nothing planted may be adopted"
    text = d.log_text()
    assert long_lived not in text and edited not in text


def test_planted_payload_refused_after_cas_conflict(
    openbao_session: OpenBaoServer, oidc_server: OidcServer, tmp_path: Path
) -> None:
    """A 10-year payload written over ours while the daemon runs: the CAS conflict offers it, syncd overwrites it.

    The read-back between rotations is off here: it would find the planted token first (see
    test_planted_payload_found_by_read_back) and the write after it would not conflict.
    """
    bao = openbao_session
    mount, cfg, out = setup(bao, oidc_server, tmp_path, verify="off")
    long_lived = "planted-while-running-token-0123456789"
    with SyncdProcess(cfg, tmp_path) as d:
        d.wait_http(timeout=60)
        wait_for(lambda: d.get("/readyz").status_code == 200, 15, what="ready")
        with FileWatcher([out / "calm.json"]) as files:
            bao.client().secrets.kv.v2.create_or_update_secret(
                path="vgs/calm", secret=planted("calm", long_lived, life=TEN_YEARS), mount_point=mount
            )
            wait_for(lambda: d.events("adopt_refused"), 10, what="the planted token refused")
            wait_for(
                lambda: vault_payload(bao, mount, "vgs/calm")["access_token"] != long_lived, 10, what="overwritten"
            )
            time.sleep(1.5)
        assert d.stop() == 0
    event = d.events("adopt_refused")[0]
    assert event["credential"] == "calm" and event["target"] == "bao:vgs/calm"
    assert "longer than the tokens the IdP issues" in event["reason"]
    assert event["stored_fingerprint"] == fingerprint(long_lived)
    assert files.seen and fingerprint(long_lived) not in files.seen
    assert not [e for e in d.events("adopted") if e.get("reason") == "another writer"]
    assert long_lived not in d.log_text()


def test_planted_payload_found_by_read_back(
    openbao_session: OpenBaoServer, oidc_server: OidcServer, tmp_path: Path
) -> None:
    """The same plant, found by the read-back between rotations: reported missing (untrusted) and overwritten.

    ``verify_interval = "0.5s"``: with "auto" the one read-back of a rotation may come before the
    plant, and then the rotation's own write replaces it (the test above) before any read-back sees it.
    """
    bao = openbao_session
    mount, cfg, out = setup(bao, oidc_server, tmp_path, verify="0.5s")
    cfg = cfg.replace("refresh_at = 0.4", "refresh_at = 0.9")  # the read-back comes well before the refresh
    long_lived = "planted-found-by-read-back-0123456789"
    with SyncdProcess(cfg, tmp_path) as d:
        d.wait_http(timeout=60)
        wait_for(lambda: d.get("/readyz").status_code == 200, 15, what="ready")
        with FileWatcher([out / "calm.json"]) as files:
            bao.client().secrets.kv.v2.create_or_update_secret(
                path="vgs/calm", secret=planted("calm", long_lived, life=TEN_YEARS), mount_point=mount
            )
            wait_for(
                lambda: [e for e in d.events("target_missing") if e["target"] == "bao:vgs/calm"],
                10,
                what="the planted token reported",
            )
            wait_for(
                lambda: vault_payload(bao, mount, "vgs/calm")["access_token"] != long_lived, 10, what="overwritten"
            )
        assert d.stop() == 0
    event = next(e for e in d.events("target_missing") if e["target"] == "bao:vgs/calm")
    assert "does not trust" in event["reason"] and "longer than the tokens the IdP issues" in event["reason"]
    assert fingerprint(long_lived) not in files.seen
    assert long_lived not in d.log_text()
