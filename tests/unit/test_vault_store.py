"""Unit tests for the Vault store against an in-memory fake of the Vault HTTP API (no network).

The fake is a ``requests.Session`` whose ``request`` answers like Vault does for
the endpoints the store uses (KV v1/v2 with check-and-set and metadata, AppRole
login, lookup-self, renew-self, the UI mounts preflight), with a clock the test
moves, per-path denials and one-shot faults. The real-server behaviour is
covered by tests/integration/test_vault_*.py.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from syncd import logs
from syncd.config import VaultStoreConfig
from syncd.payload import TokenPayload
from syncd.stores.base import FatalStoreError, TransientStoreError
from syncd.stores.vault import VaultStore

ROLE_ID = "role-id-0123456789"
SECRET_ID = "secret-id-SENSITIVE-0123456789"
STATIC_TOKEN = "hvs.static-SENSITIVE-token-0123"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeVault(requests.Session):
    """Just enough Vault for the store. Paths are API paths without ``/v1/``."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.mounts = {"secret": "2", "kv1": "1"}
        self.kv2: dict[str, dict[str, Any]] = {}
        self.kv1: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, dict[str, Any]] = {}
        self.denied: set[tuple[str, str]] = set()  # (capability, path) refused to every token
        self.faults: list[tuple[str, str, Any]] = []  # (method, path regex, status | exception), one-shot
        self.log: list[tuple[str, str, int]] = []
        self.role_ttl = 60.0
        self.role_max_ttl = 120.0
        self.logins = 0
        self.hook: Callable[[str, str], None] | None = None  # runs before a request is served
        self.metadata_bodies: list[dict[str, Any]] = []

    # -- helpers for tests ---------------------------------------------------------------

    def issue(self, ttl: float, max_ttl: float | None = None, renewable: bool = True, token: str | None = None) -> str:
        token = token or f"hvs.fake-{len(self.tokens)}-{int(self.clock() * 1000)}-SENSITIVE"
        now = self.clock()
        self.tokens[token] = {
            "expires": now + ttl if ttl else None,
            "max": now + max_ttl if max_ttl else None,
            "renewable": renewable,
            "creation_ttl": ttl,
        }
        return token

    def fail(self, method: str, path: str, what: Any) -> None:
        self.faults.append((method.upper(), path, what))

    def count(self, method: str | None = None, path: str = "") -> int:
        return sum(1 for m, p, _ in self.log if (method is None or m == method) and path in p)

    # -- the server ----------------------------------------------------------------------

    def request(self, method: str, url: str, *args: Any, **kw: Any) -> requests.Response:  # type: ignore[override]
        method = method.upper()
        path = url.split("/v1/", 1)[1]
        if self.hook is not None:
            self.hook(method, path)
        for fault in list(self.faults):
            if fault[0] == method and re.search(fault[1], path):
                self.faults.remove(fault)
                if isinstance(fault[2], BaseException):
                    self.log.append((method, path, 0))
                    raise fault[2]
                return self._reply(method, path, fault[2], {"errors": ["injected"]})
        headers = kw.get("headers") or {}
        body = kw.get("json") or {}
        status, doc = self._serve(method, path, headers.get("X-Vault-Token", ""), body)
        return self._reply(method, path, status, doc)

    def _reply(self, method: str, path: str, status: int, doc: Any) -> requests.Response:
        self.log.append((method, path, status))
        resp = requests.Response()
        resp.status_code = status
        if doc is not None:
            resp._content = json.dumps(doc).encode()
            resp.headers["Content-Type"] = "application/json"
        else:
            resp._content = b""
        resp.url = f"http://vault.test/v1/{path}"
        return resp

    def _token_ok(self, token: str) -> bool:
        info = self.tokens.get(token)
        return info is not None and (info["expires"] is None or self.clock() < info["expires"])

    def _serve(self, method: str, path: str, token: str, body: dict[str, Any]) -> tuple[int, Any]:
        now = self.clock()
        if path == "auth/approle/login" and method == "POST":
            if body.get("role_id") != ROLE_ID or body.get("secret_id") != SECRET_ID:
                return 400, {"errors": ["invalid role or secret ID"]}
            self.logins += 1
            tok = self.issue(self.role_ttl, self.role_max_ttl)
            return 200, {"auth": {"client_token": tok, "lease_duration": int(self.role_ttl), "renewable": True}}
        if not self._token_ok(token):
            return 403, {"errors": ["permission denied"]}
        info = self.tokens[token]
        if path == "auth/token/lookup-self":
            ttl = 0 if info["expires"] is None else int(info["expires"] - now)
            return 200, {
                "data": {
                    "ttl": ttl,
                    "creation_ttl": info["creation_ttl"],
                    "renewable": info["renewable"],
                    "policies": ["default", "syncd"],
                }
            }
        if path == "auth/token/renew-self":
            if not info["renewable"]:
                return 400, {"errors": ["lease is not renewable"]}
            inc = float(str(body.get("increment", "0")).rstrip("s") or 0)
            new_ttl: float = inc if info["max"] is None else min(inc, info["max"] - now)
            info["expires"] = now + new_ttl
            warnings = [f'TTL of "{inc:g}s" exceeded the effective max_ttl'] if new_ttl < inc else None
            return 200, {"auth": {"lease_duration": int(new_ttl), "renewable": True}, "warnings": warnings}
        if path.startswith("sys/internal/ui/mounts/"):
            mount = path.removeprefix("sys/internal/ui/mounts/").split("/")[0]
            if mount not in self.mounts:
                return 403, {"errors": ["preflight capability check returned 403"]}
            return 200, {"data": {"path": f"{mount}/", "type": "kv", "options": {"version": self.mounts[mount]}}}
        mount, _, rest = path.partition("/")
        if mount not in self.mounts:
            return 404, {"errors": [f'no handler for route "{path}". route entry not found.']}
        if self.mounts[mount] == "1":
            return self._kv1(method, path, rest, body)
        kind, _, key = rest.partition("/")
        entry = self.kv2.get(key)
        if kind == "data" and method == "GET":
            if ("read", path) in self.denied:
                return 403, {"errors": ["1 error occurred:\n\t* permission denied\n\n"]}
            if entry is None or not entry["versions"]:
                return 404, {"errors": []}
            version = entry["current"]
            meta = {"version": version, "custom_metadata": entry["custom"] or None, "deletion_time": ""}
            return 200, {"data": {"data": entry["versions"][version], "metadata": meta}}
        if kind == "data" and method == "POST":
            cap = "update" if entry and entry["versions"] else "create"
            if (cap, path) in self.denied:
                return 403, {"errors": ["1 error occurred:\n\t* permission denied\n\n"]}
            current = entry["current"] if entry else 0
            cas = (body.get("options") or {}).get("cas")
            if cas is not None and cas != current:
                return 400, {"errors": ["check-and-set parameter did not match the current version"]}
            entry = self.kv2.setdefault(key, {"versions": {}, "current": 0, "custom": {}, "max_versions": 0})
            entry["current"] = current + 1
            entry["versions"][current + 1] = body["data"]
            if entry["max_versions"]:
                for old in [v for v in entry["versions"] if v <= entry["current"] - entry["max_versions"]]:
                    del entry["versions"][old]
            return 200, {"data": {"version": current + 1, "custom_metadata": entry["custom"] or None}}
        if kind == "metadata" and method == "POST":
            cap = "update" if entry else "create"
            if (cap, path) in self.denied:
                return 403, {"errors": ["1 error occurred:\n\t* permission denied\n\n"]}
            entry = self.kv2.setdefault(key, {"versions": {}, "current": 0, "custom": {}, "max_versions": 0})
            self.metadata_bodies.append(body)
            if "custom_metadata" in body:
                entry["custom"] = dict(body["custom_metadata"])
            if "max_versions" in body:
                entry["max_versions"] = body["max_versions"]
            return 204, None
        return 405, {"errors": ["unsupported by the fake"]}

    def _kv1(self, method: str, path: str, key: str, body: dict[str, Any]) -> tuple[int, Any]:
        if method == "GET":
            if key not in self.kv1:
                return 404, {"errors": []}
            return 200, {"data": self.kv1[key]}
        if method in ("PUT", "POST"):
            cap = "update" if key in self.kv1 else "create"
            if (cap, path) in self.denied:
                return 403, {"errors": ["permission denied"]}
            self.kv1[key] = body
            return 204, None
        return 405, {"errors": ["unsupported"]}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def vault(clock: Clock) -> FakeVault:
    return FakeVault(clock)


def approle_config(**kw: Any) -> VaultStoreConfig:
    data: dict[str, Any] = {
        "type": "vault",
        "url": "http://127.0.0.1:8200",
        "auth": {"method": "approle", "role_id": ROLE_ID, "secret_id": SECRET_ID},
    }
    data.update(kw)
    return VaultStoreConfig.model_validate(data)


def make_store(
    vault: FakeVault, clock: Callable[[], float], cfg: VaultStoreConfig | None = None, *, renewer: bool = False
) -> VaultStore:
    store = VaultStore("vault", cfg or approle_config(), session=vault, clock=clock)
    if not renewer:
        # The fake clock jumps; a background task sleeping in real time would race the
        # assertions. The renewer has its own real-clock test below.
        store._start_renewer = lambda: None  # type: ignore[method-assign]
    return store


def payload(token: str, *, life: float = 300.0, cred: str = "calm", offset: float = 0.0) -> TokenPayload:
    now = time.time() + offset
    return TokenPayload(
        credential=cred,
        access_token=SecretStr(token),
        issued_at=now,
        expires_at=now + life,
        refresh_after=now + life / 2,
        scope="cards:read",
    )


# --------------------------------------------------------------------------- KV v2


async def test_v2_write_costs_two_requests_in_steady_state(vault: FakeVault, clock: Clock) -> None:
    store = make_store(vault, clock)
    try:
        p1 = payload("tok-first-0123456789")
        r = await store.write("vgs/calm", p1)
        assert r.written and r.version == "1" and r.location == "secret/data/vgs/calm"
        entry = vault.kv2["vgs/calm"]
        assert entry["versions"][1] == p1.to_dict()
        assert entry["custom"]["fingerprint"] == p1.fingerprint
        assert entry["custom"]["expires_at"] == p1.public_dict()["expires_at"]
        assert entry["custom"]["credential"] == "calm"
        assert entry["max_versions"] == 5
        # Only the fields syncd owns: an operator's delete_version_after / cas_required stay as they are.
        assert set(vault.metadata_bodies[-1]) == {"max_versions", "custom_metadata"}
        vault.log.clear()
        for i in range(5):
            r = await store.write("vgs/calm", payload(f"tok-next-{i}-0123456789"))
            assert r.written and r.version == str(i + 2)
        assert [(m, p) for m, p, _ in vault.log] == [
            ("POST", "secret/data/vgs/calm"),
            ("POST", "secret/metadata/vgs/calm"),
        ] * 5
    finally:
        await store.aclose()


async def test_raw_v2_keeps_public_fields_in_custom_metadata(vault: FakeVault, clock: Clock) -> None:
    from syncd.config import TargetConfig

    store = make_store(vault, clock)
    target = TargetConfig(store="vault", key="vgs/raw", format="raw")
    try:
        p = payload("tok-raw-0123456789")
        await store.write("vgs/raw", p, target=target)
        entry = vault.kv2["vgs/raw"]
        assert entry["versions"][1] == {"access_token": "tok-raw-0123456789"}
        assert entry["custom"]["expires_at"] == p.public_dict()["expires_at"]
        back = await store.read("vgs/raw", target=target)
        assert back is not None and back.fingerprint == p.fingerprint
        assert back.expires_at == pytest.approx(p.expires_at, abs=0.01)
    finally:
        await store.aclose()


async def test_cas_conflict_adopts_a_fresher_token_without_writing(vault: FakeVault, clock: Clock) -> None:
    a, b = make_store(vault, clock), make_store(vault, clock)
    try:
        await a.write("vgs/calm", payload("tok-a1-0123456789", life=300))
        await b.read("vgs/calm")  # b knows version 1
        fresher = payload("tok-a2-0123456789", life=600)
        await a.write("vgs/calm", fresher)  # version 2 by another writer
        vault.log.clear()
        r = await b.write("vgs/calm", payload("tok-b1-0123456789", life=300))
        assert not r.written
        assert r.adopted is not None and r.adopted.fingerprint == fresher.fingerprint
        assert vault.kv2["vgs/calm"]["current"] == 2
        assert [(m, p, s) for m, p, s in vault.log] == [
            ("POST", "secret/data/vgs/calm", 400),
            ("GET", "secret/data/vgs/calm", 200),
        ]
    finally:
        await a.aclose()
        await b.aclose()


async def test_cas_conflict_with_an_older_token_retries_with_the_new_version(vault: FakeVault, clock: Clock) -> None:
    a, b = make_store(vault, clock), make_store(vault, clock)
    try:
        await a.write("vgs/calm", payload("tok-a1-0123456789", life=100))
        await b.read("vgs/calm")
        await a.write("vgs/calm", payload("tok-a2-0123456789", life=200))
        ours = payload("tok-b1-0123456789", life=300)
        r = await b.write("vgs/calm", ours)
        assert r.written and r.version == "3" and r.adopted is None
        assert vault.kv2["vgs/calm"]["custom"]["fingerprint"] == ours.fingerprint
    finally:
        await a.aclose()
        await b.aclose()


async def test_other_credential_is_overwritten_not_adopted(vault: FakeVault, clock: Clock) -> None:
    a, b = make_store(vault, clock), make_store(vault, clock)
    try:
        await a.write("vgs/calm", payload("tok-card-0123456789", life=900, cred="card"))
        r = await b.write("vgs/calm", payload("tok-calm-0123456789", life=300))
        assert r.written and r.adopted is None
    finally:
        await a.aclose()
        await b.aclose()


async def test_cas_conflicts_are_bounded(vault: FakeVault, clock: Clock) -> None:
    store = make_store(vault, clock)
    try:
        await store.write("vgs/calm", payload("tok-0-0123456789", life=100))
        n = 0

        def meddle(method: str, path: str) -> None:
            nonlocal n
            if method == "POST" and path == "secret/data/vgs/calm":
                n += 1  # another writer sneaks in before every one of our writes
                entry = vault.kv2["vgs/calm"]
                entry["current"] += 1
                entry["versions"][entry["current"]] = payload(f"tok-x{n}-0123456789", life=50).to_dict()

        vault.hook = meddle
        with pytest.raises(TransientStoreError) as info:
            await store.write("vgs/calm", payload("tok-1-0123456789", life=300))
        assert info.value.code == "cas_conflict"
        assert "3 check-and-set conflicts" in info.value.message
        assert n == 3
    finally:
        await store.aclose()


async def test_same_token_already_stored_is_a_skip_that_repairs_metadata(vault: FakeVault, clock: Clock) -> None:
    store = make_store(vault, clock)
    try:
        p = payload("tok-same-0123456789")
        vault.fail("POST", r"secret/metadata/", 500)
        with pytest.raises(TransientStoreError):
            await store.write("vgs/calm", p)
        assert vault.kv2["vgs/calm"]["current"] == 1
        vault.log.clear()
        r = await store.write("vgs/calm", p)  # the engine retries the same token
        assert r.written
        assert vault.kv2["vgs/calm"]["current"] == 1  # no duplicate version
        assert [(m, pth) for m, pth, _ in vault.log] == [("POST", "secret/metadata/vgs/calm")]
        assert vault.kv2["vgs/calm"]["custom"]["fingerprint"] == p.fingerprint

        fresh = make_store(vault, clock)  # a restarted daemon retrying a token it wrote before
        vault.log.clear()
        r = await fresh.write("vgs/calm", p)
        assert not r.written and r.adopted is None
        assert not any(m == "POST" and "data" in pth for m, pth, _ in vault.log)
        await fresh.aclose()
    finally:
        await store.aclose()


async def test_missing_path_after_restart_of_vault_recovers(vault: FakeVault, clock: Clock) -> None:
    store = make_store(vault, clock)
    try:
        for i in range(3):
            await store.write("vgs/calm", payload(f"tok-{i}-0123456789"))
        vault.kv2.clear()  # Vault's storage was reset: our cached version 3 is wrong now
        r = await store.write("vgs/calm", payload("tok-new-0123456789"))
        assert r.written and r.version == "1"
    finally:
        await store.aclose()


async def test_a_non_vault_answer_is_not_a_write(vault: FakeVault, clock: Clock) -> None:
    store = make_store(vault, clock)
    try:
        await store.write("vgs/calm", payload("tok-0-0123456789"))
        orig = vault._reply

        def html(method: str, path: str, status: int, doc: Any) -> requests.Response:
            resp = orig(method, path, status, doc)
            if method == "POST" and path == "secret/data/vgs/calm":
                resp._content, resp.headers["Content-Type"] = b"<html>proxy</html>", "text/html"
            return resp

        vault._reply = html  # type: ignore[method-assign]
        with pytest.raises(TransientStoreError) as info:
            await store.write("vgs/calm", payload("tok-1-0123456789"))
        assert info.value.code == "bad_response"
    finally:
        await store.aclose()


# --------------------------------------------------------------------------- denials, re-login


async def test_revoked_token_relogs_in_and_retries_once(vault: FakeVault, clock: Clock) -> None:
    store = make_store(vault, clock)
    try:
        await store.write("vgs/calm", payload("tok-0-0123456789"))
        assert vault.logins == 1
        vault.tokens.clear()  # revoked (or Vault restarted with fresh storage)
        r = await store.write("vgs/calm", payload("tok-1-0123456789"))
        assert r.written
        assert vault.logins == 2
    finally:
        await store.aclose()


async def test_missing_update_capability_is_fatal_and_names_it(vault: FakeVault, clock: Clock) -> None:
    store = make_store(vault, clock)
    try:
        await store.write("vgs/calm", payload("tok-0-0123456789"))
        vault.denied.add(("update", "secret/data/vgs/calm"))
        with pytest.raises(FatalStoreError) as info:
            await store.write("vgs/calm", payload("tok-1-0123456789"))
        msg = info.value.message
        assert '"update"' in msg and "secret/data/vgs/calm" in msg
        assert "The token is valid (policies: default, syncd)" in msg
        assert vault.logins == 2  # one fresh login, then fatal: no loop
        for secret in (SECRET_ID, *vault.tokens):
            assert secret not in msg
    finally:
        await store.aclose()


async def test_missing_create_and_read_are_named(vault: FakeVault, clock: Clock) -> None:
    store = make_store(vault, clock)
    try:
        vault.denied.add(("read", "secret/data/vgs/calm"))
        with pytest.raises(FatalStoreError, match=r'needs "read" on secret/data/vgs/calm'):
            await store.write("vgs/calm", payload("tok-0-0123456789"))
        vault.denied.clear()
        vault.denied.add(("create", "secret/data/vgs/other"))
        with pytest.raises(FatalStoreError, match=r'needs "create" on secret/data/vgs/other'):
            await store.write("vgs/other", payload("tok-1-0123456789"))
    finally:
        await store.aclose()


async def test_metadata_denied_after_data_write(vault: FakeVault, clock: Clock) -> None:
    store = make_store(vault, clock)
    try:
        await store.write("vgs/calm", payload("tok-0-0123456789"))
        vault.denied.add(("update", "secret/metadata/vgs/calm"))
        with pytest.raises(FatalStoreError, match=r"secret/metadata/vgs/calm"):
            await store.write("vgs/calm", payload("tok-1-0123456789"))
        assert vault.kv2["vgs/calm"]["current"] == 2  # the data went in once, the retry only redid metadata
    finally:
        await store.aclose()


async def test_wrong_secret_id_is_fatal(vault: FakeVault, clock: Clock) -> None:
    cfg = approle_config(auth={"method": "approle", "role_id": ROLE_ID, "secret_id": "wrong-secret-id-0123"})
    store = make_store(vault, clock, cfg)
    try:
        with pytest.raises(FatalStoreError, match="invalid role or secret ID"):
            await store.write("vgs/calm", payload("tok-0-0123456789"))
    finally:
        await store.aclose()


async def test_missing_mount(vault: FakeVault, clock: Clock) -> None:
    store = make_store(vault, clock, approle_config(mount="nope"))
    try:
        with pytest.raises(FatalStoreError) as info:
            await store.write("vgs/calm", payload("tok-0-0123456789"))
        assert info.value.code == "mount_not_found"
        assert "nope/" in info.value.message
    finally:
        await store.aclose()


async def test_kv_version_mismatch_caught_before_writing(vault: FakeVault, clock: Clock) -> None:
    store = make_store(vault, clock, approle_config(mount="kv1", kv_version=2))
    try:
        with pytest.raises(FatalStoreError, match="KV version 1 mount but the store has kv_version = 2"):
            await store.write("vgs/calm", payload("tok-0-0123456789"))
        assert vault.kv1 == {}
    finally:
        await store.aclose()


async def test_outage_is_transient_and_recovers(vault: FakeVault, clock: Clock) -> None:
    store = make_store(vault, clock)
    try:
        await store.write("vgs/calm", payload("tok-0-0123456789"))
        vault.fail("POST", r"secret/data/", requests.exceptions.ConnectionError("connection refused"))
        with pytest.raises(TransientStoreError) as info:
            await store.write("vgs/calm", payload("tok-1-0123456789"))
        assert info.value.code == "connection"
        vault.fail("POST", r"secret/data/", 503)
        with pytest.raises(TransientStoreError):
            await store.write("vgs/calm", payload("tok-1-0123456789"))
        assert (await store.write("vgs/calm", payload("tok-1-0123456789"))).written
    finally:
        await store.aclose()


# --------------------------------------------------------------------------- own token life cycle


async def test_renews_then_logs_in_again_at_max_ttl(vault: FakeVault, clock: Clock) -> None:
    vault.role_ttl, vault.role_max_ttl = 4.0, 8.0
    store = make_store(vault, clock, approle_config(renew_before="60s"))
    try:
        await store.write("vgs/calm", payload("tok-0-0123456789"))
        assert vault.logins == 1
        clock.now += 1.0  # 3 s left > half the TTL: nothing to do
        await store.write("vgs/calm", payload("tok-1-0123456789"))
        assert vault.count("POST", "renew-self") == 0
        clock.now += 1.5  # 1.5 s left: renew (ttl 4 again)
        await store.write("vgs/calm", payload("tok-2-0123456789"))
        assert vault.count("POST", "renew-self") == 1 and vault.logins == 1
        clock.now += 2.5  # 1.5 s left: renew, but max TTL (8 s) caps it at 3 s
        await store.write("vgs/calm", payload("tok-3-0123456789"))
        assert vault.count("POST", "renew-self") == 2 and vault.logins == 1
        clock.now += 1.5  # capped and due: log in again rather than renew
        await store.write("vgs/calm", payload("tok-4-0123456789"))
        assert vault.count("POST", "renew-self") == 2
        assert vault.logins == 2
        assert not any(s == 403 for _, _, s in vault.log)  # no request ever went out with a dead token
    finally:
        await store.aclose()


async def test_background_renewer_keeps_an_idle_token_alive(vault: FakeVault) -> None:
    import asyncio

    class Live(Clock):
        def __call__(self) -> float:
            return time.monotonic()

    live = Live()
    vault.clock = live  # the fake server and the store share the real monotonic clock
    vault.role_ttl, vault.role_max_ttl = 2.0, 100.0
    store = make_store(vault, live, approle_config(renew_before="1s"), renewer=True)
    try:
        await store.write("vgs/calm", payload("tok-0-0123456789"))
        await asyncio.sleep(2.6)  # no writes: only the renewer can keep the 2 s token alive
        assert vault.count("POST", "renew-self") >= 2
        assert vault.logins == 1
        assert vault._token_ok(store._client.adapter.token)
    finally:
        await store.aclose()
    assert store._renewer is None


async def test_expired_while_idle_logs_in_before_writing(vault: FakeVault, clock: Clock) -> None:
    vault.role_ttl = 4.0
    store = make_store(vault, clock)
    try:
        await store.write("vgs/calm", payload("tok-0-0123456789"))
        clock.now += 100  # long idle: the token is gone
        await store.write("vgs/calm", payload("tok-1-0123456789"))
        assert vault.logins == 2 and vault.count("POST", "renew-self") == 0
        assert not any(s == 403 for _, _, s in vault.log)
    finally:
        await store.aclose()


async def test_renewal_outage_keeps_the_current_token_without_a_storm(vault: FakeVault, clock: Clock) -> None:
    vault.role_ttl, vault.role_max_ttl = 40.0, 400.0
    store = make_store(vault, clock)
    try:
        await store.write("vgs/calm", payload("tok-0-0123456789"))
        clock.now += 25  # 15 s left: due
        vault.fail("POST", "renew-self", 503)
        await store.write("vgs/calm", payload("tok-1-0123456789"))  # write still succeeds
        assert vault.count("POST", "renew-self") == 1
        await store.write("vgs/calm", payload("tok-2-0123456789"))  # no second renewal right away
        assert vault.count("POST", "renew-self") == 1
        clock.now += 5
        await store.write("vgs/calm", payload("tok-3-0123456789"))
        assert vault.count("POST", "renew-self") == 2
    finally:
        await store.aclose()


async def test_token_auth_rereads_the_file(vault: FakeVault, clock: Clock, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    first = vault.issue(ttl=0, token="hvs.first-SENSITIVE-0123456789")
    token_file.write_text(first + "\n")
    cfg = approle_config(auth={"method": "token", "token_file": str(token_file)})
    store = make_store(vault, clock, cfg)
    try:
        await store.write("vgs/calm", payload("tok-0-0123456789"))
        del vault.tokens[first]  # revoked
        second = vault.issue(ttl=0, token="hvs.second-SENSITIVE-0123456789")
        token_file.write_text(second)
        r = await store.write("vgs/calm", payload("tok-1-0123456789"))
        assert r.written
        del vault.tokens[second]
        with pytest.raises(FatalStoreError) as info:
            await store.write("vgs/calm", payload("tok-2-0123456789"))
        assert "refuses the token's own lookup-self" in info.value.message
        assert second not in info.value.message
    finally:
        await store.aclose()


async def test_token_auth_from_env(vault: FakeVault, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_VAULT_TOKEN", vault.issue(ttl=30, max_ttl=60, token=STATIC_TOKEN))
    store = make_store(vault, clock, approle_config(auth={"method": "token", "token_env": "MY_VAULT_TOKEN"}))
    try:
        await store.write("vgs/calm", payload("tok-0-0123456789"))
        clock.now += 20
        await store.write("vgs/calm", payload("tok-1-0123456789"))
        assert vault.count("POST", "renew-self") == 1
    finally:
        await store.aclose()


async def test_no_token_configured(vault: FakeVault, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    store = make_store(vault, clock, approle_config(auth={"method": "token"}))
    try:
        with pytest.raises(FatalStoreError, match="set the environment variable VAULT_TOKEN"):
            await store.write("vgs/calm", payload("tok-0-0123456789"))
    finally:
        await store.aclose()


async def test_vault_token_and_secret_id_are_redacted() -> None:
    clock = Clock()
    vault = FakeVault(clock)
    store = make_store(vault, clock)
    try:
        await store.write("vgs/calm", payload("tok-0-0123456789"))
        vault_token = store._client.adapter.token
        text = f"X-Vault-Token: {vault_token} secret_id={SECRET_ID} {vault_token}"
        scrubbed = logs.scrub_text(text)
        assert vault_token not in scrubbed and SECRET_ID not in scrubbed
    finally:
        await store.aclose()


async def test_kubernetes_and_jwt_login(vault: FakeVault, clock: Clock, tmp_path: Path) -> None:
    jwt_file = tmp_path / "sa-token"
    jwt_file.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJl\n")
    seen: list[tuple[str, dict[str, Any]]] = []
    orig = vault._serve

    def serve(method: str, path: str, token: str, body: dict[str, Any]) -> tuple[int, Any]:
        if path.endswith("/login"):
            seen.append((path, body))
            tok = vault.issue(60)
            return 200, {"auth": {"client_token": tok, "lease_duration": 60, "renewable": True}}
        return orig(method, path, token, body)

    vault._serve = serve  # type: ignore[method-assign]
    for auth, path in [
        ({"method": "kubernetes", "role": "syncd", "jwt_file": str(jwt_file)}, "auth/kubernetes/login"),
        (
            {"method": "kubernetes", "role": "syncd", "jwt_file": str(jwt_file), "mount": "k8s-prod"},
            "auth/k8s-prod/login",
        ),
        ({"method": "jwt", "role": "syncd", "jwt_file": str(jwt_file)}, "auth/jwt/login"),
    ]:
        store = make_store(vault, clock, approle_config(auth=auth))
        try:
            await store.write("vgs/calm", payload("tok-0-0123456789"))
        finally:
            await store.aclose()
        assert seen[-1] == (path, {"role": "syncd", "jwt": jwt_file.read_text().strip()})


async def test_missing_kubernetes_jwt_file(vault: FakeVault, clock: Clock, tmp_path: Path) -> None:
    cfg = approle_config(auth={"method": "kubernetes", "role": "syncd", "jwt_file": str(tmp_path / "nope")})
    store = make_store(vault, clock, cfg)
    try:
        with pytest.raises(FatalStoreError, match="Kubernetes pod"):
            await store.write("vgs/calm", payload("tok-0-0123456789"))
    finally:
        await store.aclose()


# --------------------------------------------------------------------------- KV v1, keys, plan


async def test_kv1_stores_the_full_payload_for_both_formats(vault: FakeVault, clock: Clock) -> None:
    from syncd.config import TargetConfig

    store = make_store(vault, clock, approle_config(mount="kv1", kv_version=1))
    try:
        p = payload("tok-v1-0123456789")
        vault.log.clear()
        r = await store.write("vgs/calm", p, target=TargetConfig(store="vault", key="vgs/calm", format="raw"))
        assert r.written and r.location == "kv1/vgs/calm"
        assert vault.kv1["vgs/calm"] == p.to_dict()
        assert [(m, pth) for m, pth, _ in vault.log if pth.startswith("kv1/")] == [("PUT", "kv1/vgs/calm")]
        back = await store.read("vgs/calm")
        assert back is not None and back.fingerprint == p.fingerprint
        assert await store.read("vgs/none") is None
    finally:
        await store.aclose()


@pytest.mark.parametrize("key", ["", "/vgs/calm", "vgs/calm/", "vgs//calm", "vgs/../x", "./calm"])
async def test_bad_keys(vault: FakeVault, clock: Clock, key: str) -> None:
    store = make_store(vault, clock)
    try:
        with pytest.raises(FatalStoreError, match="not a KV path"):
            await store.write(key, payload("tok-0-0123456789"))
        assert vault.log == []
    finally:
        await store.aclose()


def test_plan_findings(vault: FakeVault, clock: Clock) -> None:
    quiet = make_store(vault, clock)
    assert quiet.plan("vgs/calm", 576) == []
    loud = make_store(vault, clock, approle_config(url="http://vault.internal:8200", tls_skip_verify=True))
    found = loud.plan("vgs/calm", 576)
    text = "\n".join(f.render() for f in found)
    assert "tls_skip_verify" in text and "plain HTTP" in text
    assert all(f.level == "warning" for f in found)
    assert loud.plan("vgs/card", 576) == []  # store-level findings once, not per target
    v1 = make_store(vault, clock, approle_config(kv_version=1, mount="kv1"))
    assert [f.level for f in v1.plan("vgs/calm", 576)] == ["info"]
    assert [f.level for f in quiet.plan("/bad", 1)] == ["error"]


def test_tls_skip_verify_warns_at_start(vault: FakeVault, clock: Clock) -> None:
    buf = io.StringIO()
    logs.configure("info", "json", stream=buf)  # not capsys: its stream is closed after the test
    try:
        make_store(vault, clock, approle_config(tls_skip_verify=True))
    finally:
        logs.configure("info", "json")
    assert "vault_tls_verification_disabled" in buf.getvalue()
