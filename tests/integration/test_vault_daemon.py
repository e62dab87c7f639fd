"""``syncd run`` writing to a real OpenBao dev server, with the real OAuth server issuing 3 s tokens.

* AppRole (policy + role made by the test, custom auth mount) and token auth from a file;
* an AppRole token with ttl 4 s / max ttl 8 s: renewed, then replaced by a fresh login, while a
  reader polling the path never sees an expired token or a failed write;
* two daemons on the same path: check-and-set conflicts resolved, the path always unexpired,
  neither crashes nor loops (mints counted at the IdP);
* OpenBao stopped for 10 s and started again on the same port with its state re-created:
  transient errors logged, fresh again within a refresh interval of the server coming back.

Daemons run as subprocesses with ``[daemon] listen = "127.0.0.1:0"`` and JSON logs in a file.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import hvac
import pytest

from syncd.payload import TokenPayload
from tests.helpers import SyncdProcess, wait_for
from tests.peers.servers import OidcServer, OpenBaoServer

pytestmark = pytest.mark.integration

TOKEN_LIFE = 3.0  # the OAuth server's tokens (conftest OIDC_TTL)
REFRESH_AT = 0.4
REFRESH_INTERVAL = TOKEN_LIFE * REFRESH_AT  # 1.2 s, +-10 % jitter


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def syncd_policy(mount: str, prefix: str = "vgs", kv_version: int = 2) -> str:
    """The least-privilege policy of docs/vault.md."""
    if kv_version == 1:
        return f'path "{mount}/{prefix}/*" {{ capabilities = ["create", "update", "read"] }}\n'
    return (
        f'path "{mount}/data/{prefix}/*" {{ capabilities = ["create", "update", "read"] }}\n'
        f'path "{mount}/metadata/{prefix}/*" {{ capabilities = ["create", "update"] }}\n'
    )


def setup_approle(
    bao: OpenBaoServer,
    tmp_path: Path,
    *,
    kv_mount: str,
    auth_mount: str = "approle",
    role: str = "syncd",
    token_ttl: str = "1h",
    token_max_ttl: str = "4h",
    role_id: str | None = None,
    secret_id: str | None = None,
) -> tuple[Path, Path]:
    """Policy + AppRole role as an operator would make them; role_id/secret_id files for syncd."""
    root = bao.client()
    policy = f"syncd-{role}"
    root.sys.create_or_update_policy(policy, syncd_policy(kv_mount))
    if f"{auth_mount}/" not in root.sys.list_auth_methods()["data"]:
        root.sys.enable_auth_method("approle", path=auth_mount)
    root.adapter.post(
        f"/v1/auth/{auth_mount}/role/{role}",
        json={"token_policies": [policy], "token_ttl": token_ttl, "token_max_ttl": token_max_ttl},
    )
    if role_id:
        root.adapter.post(f"/v1/auth/{auth_mount}/role/{role}/role-id", json={"role_id": role_id})
    else:
        role_id = root.adapter.get(f"/v1/auth/{auth_mount}/role/{role}/role-id")["data"]["role_id"]
    if secret_id:
        root.adapter.post(f"/v1/auth/{auth_mount}/role/{role}/custom-secret-id", json={"secret_id": secret_id})
    else:
        secret_id = root.adapter.post(f"/v1/auth/{auth_mount}/role/{role}/secret-id", json={})["data"]["secret_id"]
    rid, sid = tmp_path / f"{role}.role_id", tmp_path / f"{role}.secret_id"
    rid.write_text(str(role_id))
    sid.write_text(str(secret_id))
    sid.chmod(0o600)
    return rid, sid


def enable_kv(bao: OpenBaoServer, version: int) -> str:
    mount = unique(f"kv{version}-")
    bao.client().sys.enable_secrets_engine("kv", path=mount, options={"version": str(version)})
    return mount


def client_secret_file(oidc: OidcServer, client_id: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{client_id}.secret"
    path.write_text(oidc.client(client_id).client_secret)
    path.chmod(0o600)
    return path


def daemon_config(
    *,
    stores: str,
    credentials: str,
    retry_max: str = "1s",
    fatal_retry: str = "2s",
    verify_interval: str = "auto",
) -> str:
    return f"""
[daemon]
listen = "127.0.0.1:0"
log_format = "json"
log_level = "info"

[defaults]
refresh_at = {REFRESH_AT}
min_remaining = "1s"
retry_min = "0.2s"
retry_max = "{retry_max}"
fatal_retry = "{fatal_retry}"
token_lifetime = "3s"
verify_interval = "{verify_interval}"

{stores}

{credentials}
"""


def approle_store(name: str, bao: OpenBaoServer, mount: str, rid: Path, sid: Path, auth_mount: str = "approle") -> str:
    return f"""
[stores.{name}]
type = "vault"
url = "{bao.url}"
mount = "{mount}"
max_versions = 3
renew_before = "2s"
auth = {{ method = "approle", role_id = {{ file = "{rid}" }}, secret_id = {{ file = "{sid}" }}, mount = "{auth_mount}" }}
"""


def credential(oidc: OidcServer, client_id: str, secret: Path, targets: str, name: str | None = None) -> str:
    return f"""
[[credentials]]
name = "{name or client_id}"
token_url = "{oidc.token_url}"
client_id = "{client_id}"
client_secret = {{ file = "{secret}" }}
scopes = ["cards:read"]
targets = [{targets}]
"""


class Watcher:
    """A consumer polling a KV v2 path with its own client; records every observation."""

    def __init__(self, bao: OpenBaoServer, mount: str, key: str, interval: float = 0.1) -> None:
        self.url, self.token, self.mount, self.key, self.interval = bao.url, bao.root_token, mount, key, interval
        self.obs: list[tuple[float, TokenPayload | None, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{key}", daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        client = hvac.Client(url=self.url, token=self.token, timeout=2)
        while not self._stop.is_set():
            try:
                r = client.secrets.kv.v2.read_secret_version(
                    path=self.key, mount_point=self.mount, raise_on_deleted_version=True
                )
                p: TokenPayload | None = TokenPayload.from_dict(r["data"]["data"], source=self.key)
                err = None
            except Exception as exc:
                p, err = None, type(exc).__name__
            self.obs.append((time.time(), p, err))
            self._stop.wait(self.interval)

    def window(self, start: float, end: float) -> list[tuple[float, TokenPayload | None, str | None]]:
        return [o for o in self.obs if start <= o[0] <= end]

    def assert_always_fresh(self, start: float, end: float) -> int:
        """Every observation in [start, end] is a payload that has not expired (checked after the read)."""
        seen = self.window(start, end)
        assert seen, "no observations in the window"
        for t, p, err in seen:
            assert p is not None, f"reader saw {err} at +{t - start:.2f}s"
            assert p.expires_at > t, f"reader saw a token expired {t - p.expires_at:.2f}s ago at +{t - start:.2f}s"
        return len({p.fingerprint for _, p, _ in seen if p is not None})


def fresh_in_vault(bao: OpenBaoServer, mount: str, key: str) -> TokenPayload | None:
    try:
        r = bao.client().secrets.kv.v2.read_secret_version(path=key, mount_point=mount, raise_on_deleted_version=True)
    except Exception:
        return None
    p = TokenPayload.from_dict(r["data"]["data"])
    return p if p.expires_at > time.time() else None


def writes(d: SyncdProcess, outcome: str | None = None) -> list[dict[str, Any]]:
    return [e for e in d.events("write") if outcome is None or e.get("outcome") == outcome]


def assert_no_secrets(d: SyncdProcess, *secrets: str) -> None:
    text = d.log_text()
    for s in secrets:
        assert s and s not in text, "a secret reached the log"


# --------------------------------------------------------------------------- tests


def test_approle_and_token_file(openbao_session: OpenBaoServer, oidc_server: OidcServer, tmp_path: Path) -> None:
    """AppRole on a custom auth mount writing KV v2 (json + raw), token auth from a file writing KV v1."""
    bao = openbao_session
    v2, v1 = enable_kv(bao, 2), enable_kv(bao, 1)
    auth_mount = unique("approle-")
    rid, sid = setup_approle(bao, tmp_path, kv_mount=v2, auth_mount=auth_mount, role=unique("r"))
    root = bao.client()
    root.sys.create_or_update_policy("syncd-v1", syncd_policy(v1, kv_version=1))
    vault_token = root.auth.token.create(policies=["syncd-v1"], ttl="1h")["auth"]["client_token"]
    token_file = tmp_path / "vault.token"
    token_file.write_text(vault_token + "\n")
    token_file.chmod(0o600)
    stores = (
        approle_store("bao", bao, v2, rid, sid, auth_mount)
        + f"""
[stores.bao1]
type = "vault"
url = "{bao.url}"
mount = "{v1}"
kv_version = 1
auth = {{ method = "token", token_file = "{token_file}" }}
"""
    )
    creds = credential(
        oidc_server,
        "calm",
        client_secret_file(oidc_server, "calm", tmp_path),
        '{ store = "bao", key = "vgs/calm" }, { store = "bao", key = "vgs/calm-raw", format = "raw" }',
    ) + credential(
        oidc_server, "card", client_secret_file(oidc_server, "card", tmp_path), '{ store = "bao1", key = "vgs/card" }'
    )
    with SyncdProcess(daemon_config(stores=stores, credentials=creds), tmp_path) as d:
        wait_for(lambda: len(writes(d, "ok")) >= 3, 15, what="first writes")
        with Watcher(bao, v2, "vgs/calm") as w:
            start = time.time()
            time.sleep(4)
        rotations = w.assert_always_fresh(start, time.time())
        assert d.stop() == 0
    assert rotations >= 3
    logins = {e["method"] for e in d.events("vault_login")}
    assert logins == {"approle", "token"}
    assert not writes(d, "transient") and not writes(d, "fatal")

    data = root.secrets.kv.v2.read_secret_version(path="vgs/calm", mount_point=v2, raise_on_deleted_version=True)
    p = TokenPayload.from_dict(data["data"]["data"])
    assert p.credential == "calm" and p.scope == "cards:read"
    meta = root.secrets.kv.v2.read_secret_metadata(path="vgs/calm", mount_point=v2)["data"]
    assert meta["max_versions"] == 3 and len(meta["versions"]) <= 3 and meta["current_version"] >= 4
    assert meta["custom_metadata"]["fingerprint"] == p.fingerprint
    assert meta["custom_metadata"]["expires_at"] == p.public_dict()["expires_at"]
    raw = root.secrets.kv.v2.read_secret_version(path="vgs/calm-raw", mount_point=v2, raise_on_deleted_version=True)
    assert set(raw["data"]["data"]) == {"access_token"}
    assert raw["data"]["metadata"]["custom_metadata"]["credential"] == "calm"
    card = TokenPayload.from_dict(root.secrets.kv.v1.read_secret(path="vgs/card", mount_point=v1)["data"])
    assert card.credential == "card"
    assert_no_secrets(d, vault_token, sid.read_text(), oidc_server.client("calm").client_secret)


def test_short_ttl_vault_token_renewed_then_replaced(
    openbao_session: OpenBaoServer, oidc_server: OidcServer, tmp_path: Path
) -> None:
    """AppRole tokens with ttl 4 s and max ttl 8 s: renew-self, then a fresh login, with no failed write."""
    bao = openbao_session
    kv = enable_kv(bao, 2)
    rid, sid = setup_approle(bao, tmp_path, kv_mount=kv, role=unique("short"), token_ttl="4s", token_max_ttl="8s")
    creds = credential(
        oidc_server,
        "extra2",
        client_secret_file(oidc_server, "extra2", tmp_path),
        '{ store = "bao", key = "vgs/short" }',
    )
    cfg = daemon_config(stores=approle_store("bao", bao, kv, rid, sid), credentials=creds)
    with SyncdProcess(cfg, tmp_path) as d:
        wait_for(lambda: writes(d, "ok"), 15, what="first write")
        with Watcher(bao, kv, "vgs/short") as w:
            start = time.time()
            wait_for(
                lambda: len([e for e in d.events("vault_login") if e["reason"] == "max_ttl"]) >= 2,
                25,
                what="two logins at max TTL",
            )
            time.sleep(1.5)  # writes keep going with the newest token
        w.assert_always_fresh(start, time.time())
        assert d.stop() == 0
    renewed = d.events("vault_token_renewed")
    logins = d.events("vault_login")
    assert len(renewed) >= 2, renewed
    assert any(e["capped"] for e in renewed), "the max TTL should cap a renewal"
    assert [e["reason"] for e in logins][:3] == ["start", "max_ttl", "max_ttl"], logins
    assert all(e["ttl"] == 4 for e in logins)
    # Never a denied request: every token was replaced before it expired.
    assert not d.events("vault_denied")
    assert writes(d, "ok") and not writes(d, "transient") and not writes(d, "fatal")


def test_two_daemons_on_one_path(openbao_session: OpenBaoServer, oidc_server: OidcServer, tmp_path: Path) -> None:
    """Two processes, same credential and path: CAS conflicts resolved, always fresh, no crash, no hot loop.

    The read-back between rotations is off here: a read-back refreshes the version each daemon
    remembers for ``cas``, so with it on the two writers only collide when their writes happen to
    fall between the other's read-back and write (a timing lottery). Off, each daemon writes with
    the version it last wrote, so every write after the other daemon's is a check-and-set conflict.
    """
    bao = openbao_session
    kv = enable_kv(bao, 2)
    rid, sid = setup_approle(bao, tmp_path, kv_mount=kv, role=unique("pair"))
    creds = credential(
        oidc_server,
        "extra1",
        client_secret_file(oidc_server, "extra1", tmp_path),
        '{ store = "bao", key = "vgs/shared" }',
    )
    cfg = daemon_config(stores=approle_store("bao", bao, kv, rid, sid), credentials=creds, verify_interval="off")
    issued_before = oidc_server.issued("extra1")
    duration = 10.0
    with SyncdProcess(cfg, tmp_path, name="a") as a, SyncdProcess(cfg, tmp_path, name="b") as b:
        wait_for(lambda: writes(a, "ok") and writes(b, "ok"), 15, what="both daemons writing")
        with Watcher(bao, kv, "vgs/shared") as w:
            start = time.time()
            time.sleep(duration)
            assert a.proc is not None and a.proc.poll() is None, "daemon a died"
            assert b.proc is not None and b.proc.poll() is None, "daemon b died"
        rotations = w.assert_always_fresh(start, time.time())
        assert a.stop() == 0 and b.stop() == 0
    conflicts = a.events("vault_cas_conflict") + b.events("vault_cas_conflict")
    resolved = a.events("vault_cas_resolved") + b.events("vault_cas_resolved")
    assert conflicts, "two writers on one path should meet check-and-set conflicts"
    assert len(resolved) >= len(conflicts)  # every conflict ends in a decision (adopt / write)
    assert not writes(a, "fatal") and not writes(b, "fatal")
    mints = [e for e in a.events("mint") + b.events("mint") if e["outcome"] == "ok"]
    issued = oidc_server.issued("extra1") - issued_before
    assert issued == len(mints)
    # Each daemon refreshes once per ~1.2 s (+-10 %) on its own: about 2 x runtime / 1.2 in all.
    runtime = (time.time() - start) + 3  # plus start-up before the watch window
    bound = 2 * runtime / (REFRESH_INTERVAL * 0.9) + 4
    assert len(mints) <= bound, f"{len(mints)} mints in ~{runtime:.0f}s (bound {bound:.0f}): a hot loop"
    attempts = len(writes(a)) + len(writes(b))
    assert attempts <= 2 * bound, f"{attempts} write attempts: a hot loop"
    assert rotations >= duration / REFRESH_INTERVAL


def test_outage_of_ten_seconds(openbao: OpenBaoServer, oidc_server: OidcServer, tmp_path: Path) -> None:
    """OpenBao down 10 s and back with fresh storage: transient errors, then fresh within a refresh interval."""
    bao = openbao
    role_id, secret_id = "syncd-fixed-role-id", "syncd-fixed-secret-id-0123456789"

    def recreate_state() -> tuple[Path, Path]:
        # A dev server keeps nothing: the test plays the operator restoring Vault's state.
        return setup_approle(bao, tmp_path, kv_mount="secret", role_id=role_id, secret_id=secret_id)

    rid, sid = recreate_state()
    creds = credential(
        oidc_server,
        "extra3",
        client_secret_file(oidc_server, "extra3", tmp_path),
        '{ store = "bao", key = "vgs/outage" }',
    )
    cfg = daemon_config(
        stores=approle_store("bao", bao, "secret", rid, sid), credentials=creds, retry_max="0.5s", fatal_retry="0.5s"
    )
    with SyncdProcess(cfg, tmp_path) as d:
        wait_for(lambda: writes(d, "ok"), 15, what="first write")
        with Watcher(bao, "secret", "vgs/outage") as w:
            time.sleep(2)
            down = time.time()
            bao.stop()
            time.sleep(10)
            bao.start()
            recreate_state()
            back = time.time()
            fresh = wait_for(lambda: fresh_in_vault(bao, "secret", "vgs/outage"), 10, interval=0.02, what="fresh again")
            recovered = time.time()
            time.sleep(3)
            end = time.time()
        assert d.proc is not None and d.proc.poll() is None, "the daemon died during the outage"
        assert d.stop() == 0
    recovery = recovered - back
    print(f"fresh again {recovery:.2f}s after OpenBao came back (refresh interval {REFRESH_INTERVAL:.1f}s)")
    assert fresh.expires_at > recovered
    # Within one refresh interval, plus the store's retry pacing (retry_max / fatal_retry = 0.5 s).
    assert recovery <= REFRESH_INTERVAL + 0.5, f"took {recovery:.2f}s"
    w.assert_always_fresh(w.obs[0][0], down - 0.2)
    w.assert_always_fresh(recovered + 0.1, end)

    during = [e for e in writes(d) if down <= _ts(e) <= back]
    transient = [e for e in during if e["outcome"] == "transient"]
    assert transient, "the outage should be logged as transient write errors"
    assert {e["error_code"] for e in transient} == {"connection"}
    assert all("cannot reach Vault" in e["error"] for e in transient)
    assert len(during) <= 10 / 0.1, f"{len(during)} write attempts in 10 s: a hot loop"
    after = [e for e in writes(d) if _ts(e) > recovered]
    assert after and all(e["outcome"] == "ok" for e in after)
    # The new server does not know the old Vault token: one denial, a fresh login, and on.
    assert any(e["reason"] == "permission_denied" for e in d.events("vault_login"))
    mints_during = [e for e in d.events("mint") if down <= _ts(e) <= back]
    assert len(mints_during) <= 10 / (REFRESH_INTERVAL * 0.9) + 2  # minting kept its own pace
    assert_no_secrets(d, secret_id)


def _ts(event: dict[str, Any]) -> float:
    from syncd.payload import from_rfc3339

    return from_rfc3339(event["timestamp"])
