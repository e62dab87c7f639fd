"""The vault store against a real OpenBao dev server, in process: KV v1/v2 wire format, metadata,
max_versions, check-and-set between two writers, least-privilege policies, token and JWT auth,
and the consumer reader (``syncd.client.TokenReader``) reading what the store wrote.

Daemon-level behaviour (``syncd run``: AppRole, renewal, two daemons, an outage) is in
test_vault_daemon.py.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from syncd.config import TargetConfig, VaultStoreConfig
from syncd.payload import TokenPayload
from syncd.stores.base import FatalStoreError
from syncd.stores.vault import VaultStore
from tests.peers.servers import OpenBaoServer

pytestmark = pytest.mark.integration


def syncd_policy(mount: str, prefix: str = "vgs", kv_version: int = 2) -> str:
    """The least-privilege policy of docs/vault.md."""
    if kv_version == 1:
        return f'path "{mount}/{prefix}/*" {{ capabilities = ["create", "update", "read"] }}\n'
    return (
        f'path "{mount}/data/{prefix}/*" {{ capabilities = ["create", "update", "read"] }}\n'
        f'path "{mount}/metadata/{prefix}/*" {{ capabilities = ["create", "update"] }}\n'
    )


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def enable_kv(bao: OpenBaoServer, version: int) -> str:
    mount = unique(f"kv{version}-")
    bao.client().sys.enable_secrets_engine("kv", path=mount, options={"version": str(version)})
    return mount


def policy_token(bao: OpenBaoServer, tmp_path: Path, policy: str, *, ttl: str = "1h") -> Path:
    """A token with just ``policy`` (plus default), written to a file for ``token`` auth."""
    root = bao.client()
    name = unique("syncd-")
    root.sys.create_or_update_policy(name, policy)
    token = root.auth.token.create(policies=[name], ttl=ttl)["auth"]["client_token"]
    path = tmp_path / f"{name}.token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def store_for(bao: OpenBaoServer, mount: str, token_file: Path, **kw: Any) -> VaultStore:
    cfg = VaultStoreConfig.model_validate(
        {
            "type": "vault",
            "url": bao.url,
            "mount": mount,
            "auth": {"method": "token", "token_file": str(token_file)},
            **kw,
        }
    )
    return VaultStore("vault", cfg)


def payload(token: str | None = None, *, life: float = 300.0, cred: str = "calm") -> TokenPayload:
    now = time.time()
    return TokenPayload(
        credential=cred,
        access_token=SecretStr(token or f"at-{uuid.uuid4().hex}"),
        issued_at=now,
        expires_at=now + life,
        refresh_after=now + life / 2,
        scope="cards:read cards:write",
    )


class RequestCounter:
    def __init__(self, store: VaultStore) -> None:
        self.seen: list[tuple[str, str, int]] = []
        store._session.hooks["response"].append(self._hook)

    def _hook(self, r: Any, *args: Any, **kwargs: Any) -> None:
        self.seen.append((r.request.method, r.request.path_url.split("?")[0], r.status_code))

    def clear(self) -> None:
        self.seen.clear()


class LoopCounter:
    """The store's requests from the event loop (``aio.AioRequests._post``): its rotation writes."""

    def __init__(self, store: VaultStore) -> None:
        self.seen: list[tuple[str, str, int]] = []
        aio = store._aio
        post = aio._post

        async def counted(session: Any, template: str, key: str, body: Any, headers: Any) -> tuple[int, Any]:
            status, answer = await post(session, template, key, body, headers)
            self.seen.append(("POST", aio._url(template, key).split("://", 1)[1].split("/", 1)[1], status))
            return status, answer

        aio._post = counted  # type: ignore[method-assign]


async def test_kv2_json_round_trip_metadata_and_max_versions(openbao_session: OpenBaoServer, tmp_path: Path) -> None:
    bao = openbao_session
    mount = enable_kv(bao, 2)
    token_file = policy_token(bao, tmp_path, syncd_policy(mount))
    store = store_for(bao, mount, token_file, max_versions=3)
    counter, on_loop = RequestCounter(store), LoopCounter(store)
    root = bao.client()
    try:
        first = payload()
        r = await store.write("vgs/calm", first)
        assert r.written and r.version == "1" and r.location == f"{mount}/data/vgs/calm"

        read = root.secrets.kv.v2.read_secret_version(path="vgs/calm", mount_point=mount, raise_on_deleted_version=True)
        assert read["data"]["data"] == first.to_dict()  # every payload field at the top level
        meta = root.secrets.kv.v2.read_secret_metadata(path="vgs/calm", mount_point=mount)["data"]
        assert meta["max_versions"] == 3
        pub = first.public_dict()
        assert meta["custom_metadata"] == {
            "credential": "calm",
            "expires_at": pub["expires_at"],
            "issued_at": pub["issued_at"],
            "refresh_after": pub["refresh_after"],
            "fingerprint": first.fingerprint,
            "token_type": "Bearer",
            "scope": "cards:read cards:write",
        }

        counter.clear()
        latest = first
        for _ in range(5):
            latest = payload()
            assert (await store.write("vgs/calm", latest)).written
        # Steady state: one data POST (with cas) and one metadata POST per rotation, nothing else, both
        # from the event loop (aio.py); the first write looked the path up through hvac.
        assert counter.seen == []
        assert [("/" + p, status) for _, p, status in on_loop.seen] == [
            (f"/v1/{mount}/data/vgs/calm", 200),
            (f"/v1/{mount}/metadata/vgs/calm", 204),
        ] * 5
        meta = root.secrets.kv.v2.read_secret_metadata(path="vgs/calm", mount_point=mount)["data"]
        assert meta["current_version"] == 6
        assert len(meta["versions"]) == 3  # max_versions applied
        assert meta["custom_metadata"]["fingerprint"] == latest.fingerprint  # describes the latest version

        back = await store.read("vgs/calm")
        assert back is not None and back.fingerprint == latest.fingerprint
        assert back.expires_at == pytest.approx(latest.expires_at, abs=0.002)
        assert await store.read("vgs/missing") is None
    finally:
        await store.aclose()


async def test_kv2_raw_keeps_only_the_token_in_data(openbao_session: OpenBaoServer, tmp_path: Path) -> None:
    bao = openbao_session
    mount = enable_kv(bao, 2)
    store = store_for(bao, mount, policy_token(bao, tmp_path, syncd_policy(mount)))
    target = TargetConfig(store="vault", key="vgs/raw", format="raw")
    try:
        p = payload()
        await store.write("vgs/raw", p, target=target)
        read = bao.client().secrets.kv.v2.read_secret_version(
            path="vgs/raw", mount_point=mount, raise_on_deleted_version=True
        )
        assert read["data"]["data"] == {"access_token": p.access_token.get_secret_value()}
        assert read["data"]["metadata"]["custom_metadata"]["expires_at"] == p.public_dict()["expires_at"]
        back = await store.read("vgs/raw", target=target)
        assert back is not None and back.fingerprint == p.fingerprint and back.credential == "calm"
    finally:
        await store.aclose()


async def test_kv1_round_trip(openbao_session: OpenBaoServer, tmp_path: Path) -> None:
    bao = openbao_session
    mount = enable_kv(bao, 1)
    store = store_for(bao, mount, policy_token(bao, tmp_path, syncd_policy(mount, kv_version=1)), kv_version=1)
    counter = RequestCounter(store)
    try:
        for fmt in ("json", "raw"):
            key = f"vgs/{fmt}"
            p = payload()
            await store.write(key, p, target=TargetConfig(store="vault", key=key, format=fmt))  # type: ignore[arg-type]
            data = bao.client().secrets.kv.v1.read_secret(path=key, mount_point=mount)["data"]
            assert data == p.to_dict()  # v1 has no metadata: raw keeps the public fields beside the token
            back = await store.read(key)
            assert back is not None and back.fingerprint == p.fingerprint
        counter.clear()
        await store.write("vgs/json", payload())
        assert [(m, path) for m, path, _ in counter.seen] == [("PUT", f"/v1/{mount}/vgs/json")]
    finally:
        await store.aclose()


async def test_cas_conflict_between_two_writers(openbao_session: OpenBaoServer, tmp_path: Path) -> None:
    bao = openbao_session
    mount = enable_kv(bao, 2)
    token_file = policy_token(bao, tmp_path, syncd_policy(mount))
    a, b = store_for(bao, mount, token_file), store_for(bao, mount, token_file)
    try:
        await a.write("vgs/calm", payload(life=100))
        await b.read("vgs/calm")  # b now expects version 1
        fresher = payload(life=600)
        await a.write("vgs/calm", fresher)  # version 2, behind b's back
        r = await b.write("vgs/calm", payload(life=300))
        assert not r.written and r.adopted is not None
        assert r.adopted.fingerprint == fresher.fingerprint  # the engine adopts it and reschedules
        newest = payload(life=900)
        r = await b.write("vgs/calm", newest)  # b's version is current after the re-read
        assert r.written and r.version == "3"
        older = payload(life=50)
        r = await a.write("vgs/calm", older)  # a conflicts, finds a fresher token: adopts, no write
        assert r.adopted is not None and r.adopted.fingerprint == newest.fingerprint
        meta = bao.client().secrets.kv.v2.read_secret_metadata(path="vgs/calm", mount_point=mount)["data"]
        assert meta["current_version"] == 3 and meta["custom_metadata"]["fingerprint"] == newest.fingerprint
    finally:
        await a.aclose()
        await b.aclose()


async def test_policy_without_update_names_capability_and_path(openbao_session: OpenBaoServer, tmp_path: Path) -> None:
    bao = openbao_session
    mount = enable_kv(bao, 2)
    no_update = (
        f'path "{mount}/data/vgs/*" {{ capabilities = ["create", "read"] }}\n'
        f'path "{mount}/metadata/vgs/*" {{ capabilities = ["create", "update"] }}\n'
    )
    token_file = policy_token(bao, tmp_path, no_update)
    store = store_for(bao, mount, token_file)
    try:
        assert (await store.write("vgs/calm", payload())).written  # create is allowed
        with pytest.raises(FatalStoreError) as info:
            await store.write("vgs/calm", payload())  # an update is not
        msg = info.value.message
        assert f'needs "update" on {mount}/data/vgs/calm' in msg
        assert f'path "{mount}/data/vgs/calm" {{ capabilities = ["update"] }}' in msg
        assert "The token is valid (policies: " in msg
        assert token_file.read_text().strip() not in msg
    finally:
        await store.aclose()


async def test_a_plain_write_vault_refuses_is_the_hvac_paths_to_resolve(
    openbao_session: OpenBaoServer, tmp_path: Path
) -> None:
    """A rotation's write goes from the event loop only while Vault answers it plainly: a check-and-set
    conflict (another writer was there) is handed to the hvac path, which looks the path up and adopts
    the fresher token, exactly as before; the store then writes from the loop again."""
    bao = openbao_session
    mount = enable_kv(bao, 2)
    token_file = policy_token(bao, tmp_path, syncd_policy(mount))
    a, b = store_for(bao, mount, token_file), store_for(bao, mount, token_file)
    hvac_b, loop_b = RequestCounter(b), LoopCounter(b)
    data = f"{mount}/data/vgs/calm"
    try:
        await b.write("vgs/calm", payload(life=100))  # b knows version 1
        fresher = payload(life=600)
        await a.write("vgs/calm", fresher)  # version 2, behind b's back
        hvac_b.clear()
        r = await b.write("vgs/calm", payload(life=300))
        assert [(p, status) for _, p, status in loop_b.seen] == [(f"v1/{data}", 400)]  # cas refused
        assert ("GET", f"/v1/{data}", 200) in hvac_b.seen  # the hvac path looked it up
        assert not r.written and r.adopted is not None and r.adopted.fingerprint == fresher.fingerprint

        loop_b.seen.clear()
        hvac_b.clear()
        newest = payload(life=900)
        r = await b.write("vgs/calm", newest)  # b's version is current again: a plain write from the loop
        assert r.written and r.version == "3" and hvac_b.seen == []
        assert [status for *_, status in loop_b.seen] == [200, 204]
        meta = bao.client().secrets.kv.v2.read_secret_metadata(path="vgs/calm", mount_point=mount)["data"]
        assert meta["current_version"] == 3 and meta["custom_metadata"]["fingerprint"] == newest.fingerprint
    finally:
        await a.aclose()
        await b.aclose()


async def test_data_written_from_the_loop_and_metadata_refused_is_not_written_twice(
    openbao_session: OpenBaoServer, tmp_path: Path
) -> None:
    """The data request lands, the metadata request is denied: the hvac path takes over knowing the data
    is there, so it retries only the metadata (no second version of the same token) and reports the
    denial with the capability and path to grant."""
    bao = openbao_session
    mount = enable_kv(bao, 2)
    no_metadata_update = (
        f'path "{mount}/data/vgs/*" {{ capabilities = ["create", "update", "read"] }}\n'
        f'path "{mount}/metadata/vgs/*" {{ capabilities = ["create"] }}\n'
    )
    store = store_for(bao, mount, policy_token(bao, tmp_path, no_metadata_update))
    hvac_requests, on_loop = RequestCounter(store), LoopCounter(store)
    root = bao.client()
    try:
        with pytest.raises(FatalStoreError):
            await store.write("vgs/calm", payload())  # version 1; its metadata (an update by now) is refused
        hvac_requests.clear()
        second = payload()
        with pytest.raises(FatalStoreError) as info:
            await store.write("vgs/calm", second)
        assert [status for *_, status in on_loop.seen] == [200, 403]  # data landed, metadata denied
        assert [(m, p) for m, p, _ in hvac_requests.seen if "/data/" in p] == []  # the data is not sent again
        assert f"{mount}/metadata/vgs/calm" in info.value.message
        meta = root.secrets.kv.v2.read_secret_metadata(path="vgs/calm", mount_point=mount)["data"]
        assert meta["current_version"] == 2
        stored = root.secrets.kv.v2.read_secret_version(
            path="vgs/calm", mount_point=mount, raise_on_deleted_version=True
        )
        assert stored["data"]["data"]["fingerprint"] == second.fingerprint
    finally:
        await store.aclose()


async def test_a_denied_plain_write_logs_in_again_through_hvac(openbao_session: OpenBaoServer, tmp_path: Path) -> None:
    """The store's token is revoked between two rotations and a new one is put in its token file: the
    write from the loop is denied, the hvac path logs in again with the file's new token and writes."""
    bao = openbao_session
    mount = enable_kv(bao, 2)
    policy = syncd_policy(mount)
    token_file = policy_token(bao, tmp_path, policy)
    store = store_for(bao, mount, token_file)
    on_loop = LoopCounter(store)
    root = bao.client()
    try:
        await store.write("vgs/calm", payload())
        root.auth.token.revoke(token_file.read_text().strip())
        token_file.write_text(policy_token(bao, tmp_path, policy).read_text())
        latest = payload()
        r = await store.write("vgs/calm", latest)
        assert r.written and r.version == "2"
        assert [status for *_, status in on_loop.seen] == [403]
        meta = root.secrets.kv.v2.read_secret_metadata(path="vgs/calm", mount_point=mount)["data"]
        assert meta["custom_metadata"]["fingerprint"] == latest.fingerprint
    finally:
        await store.aclose()


async def test_misconfigured_mounts(openbao_session: OpenBaoServer, tmp_path: Path) -> None:
    bao = openbao_session
    root_file = tmp_path / "root.token"
    root_file.write_text(bao.root_token)
    v2 = enable_kv(bao, 2)
    wrong_version = store_for(bao, v2, root_file, kv_version=1)
    missing = store_for(bao, unique("nope-"), root_file)
    nested = store_for(bao, f"{v2}/vgs", root_file)
    try:
        with pytest.raises(FatalStoreError, match="KV version 2 mount but the store has kv_version = 1"):
            await wrong_version.write("vgs/calm", payload())
        with pytest.raises(FatalStoreError) as info:
            await missing.write("vgs/calm", payload())
        assert "bao secrets enable" in info.value.message
        with pytest.raises(FatalStoreError, match=f'set mount = "{v2}"'):
            await nested.write("calm", payload())
    finally:
        for s in (wrong_version, missing, nested):
            await s.aclose()


def _jwt(key: Any, claims: dict[str, Any]) -> str:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64(sig)}"


async def test_jwt_auth_login(openbao_session: OpenBaoServer, tmp_path: Path) -> None:
    """The jwt method against OpenBao's real JWT auth (static public key), custom mount path."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    bao = openbao_session
    root = bao.client()
    mount = enable_kv(bao, 2)
    auth_mount = unique("jwt-")
    policy = unique("syncd-jwt-")
    root.sys.create_or_update_policy(policy, syncd_policy(mount))
    root.sys.enable_auth_method("jwt", path=auth_mount)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    root.adapter.post(f"/v1/auth/{auth_mount}/config", json={"jwt_validation_pubkeys": [pem.decode()]})
    root.adapter.post(
        f"/v1/auth/{auth_mount}/role/syncd",
        json={
            "role_type": "jwt",
            "bound_audiences": ["syncd"],
            "user_claim": "sub",
            "token_policies": [policy],
            "token_ttl": "10m",
        },
    )
    now = int(time.time())
    jwt_file = tmp_path / "jwt"
    jwt_file.write_text(_jwt(key, {"sub": "syncd", "aud": "syncd", "iat": now, "nbf": now, "exp": now + 600}))
    cfg = VaultStoreConfig.model_validate(
        {
            "type": "vault",
            "url": bao.url,
            "mount": mount,
            "auth": {"method": "jwt", "role": "syncd", "jwt_file": str(jwt_file), "mount": auth_mount},
        }
    )
    store = VaultStore("vault", cfg)
    try:
        assert (await store.write("vgs/calm", payload())).written
        assert store._lease.ttl == 600 and store._lease.renewable
        jwt_file.write_text(_jwt(key, {"sub": "syncd", "aud": "someone-else", "iat": now, "exp": now + 600}))
        store._client.adapter.token = "revoked-or-expired-token"  # force a login with the bad JWT
        with pytest.raises(FatalStoreError, match=f"jwt login at auth/{auth_mount}/login .* was refused"):
            await store.write("vgs/calm", payload())
    finally:
        await store.aclose()


async def test_consumer_reader_reads_what_the_store_wrote(openbao_session: OpenBaoServer, tmp_path: Path) -> None:
    """Wire compatibility with syncd.client.TokenReader: json and raw on KV v2, and KV v1."""
    from syncd.client import TokenReader

    bao = openbao_session
    v2, v1 = enable_kv(bao, 2), enable_kv(bao, 1)
    root_file = tmp_path / "root.token"
    root_file.write_text(bao.root_token)
    s2, s1 = store_for(bao, v2, root_file), store_for(bao, v1, root_file, kv_version=1)
    reader_token = (
        policy_token(
            bao,
            tmp_path,
            f'path "{v2}/data/vgs/*" {{ capabilities = ["read"] }}\npath "{v1}/vgs/*" {{ capabilities = ["read"] }}\n',
        )
        .read_text()
        .strip()
    )
    try:
        cases = [
            (s2, "vgs/json", "json", f"vault://{v2}/vgs/json"),
            (s2, "vgs/raw", "raw", f"vault://{v2}/vgs/raw"),
            (s1, "vgs/v1", "raw", f"vault://{v1}/vgs/v1?kv=1"),
        ]
        for store, key, fmt, url in cases:
            p = payload()
            await store.write(key, p, target=TargetConfig(store="vault", key=key, format=fmt))  # type: ignore[arg-type]
            with TokenReader(url, vault_addr=bao.url, vault_token=reader_token) as reader:
                info = reader.token_info()
            assert info.fingerprint == p.fingerprint, url
            assert info.expires_at == pytest.approx(p.expires_at, abs=0.002), url
            assert reader_token and info.credential == "calm"
    finally:
        await s2.aclose()
        await s1.aclose()


async def test_debug_logs_never_show_vault_secrets(openbao_session: OpenBaoServer, tmp_path: Path) -> None:
    """At debug level hvac, urllib3 and aiohttp log too; the Vault token, role_id, secret_id and the access
    tokens written (through hvac and from the event loop, denied and plain) never appear."""
    import io

    from syncd import logs

    bao = openbao_session
    root = bao.client()
    mount = enable_kv(bao, 2)
    auth_mount, policy = unique("approle-"), unique("syncd-")
    root.sys.create_or_update_policy(policy, syncd_policy(mount))
    root.sys.enable_auth_method("approle", path=auth_mount)
    root.adapter.post(f"/v1/auth/{auth_mount}/role/syncd", json={"token_policies": [policy], "token_ttl": "4s"})
    role_id = root.adapter.get(f"/v1/auth/{auth_mount}/role/syncd/role-id")["data"]["role_id"]
    secret_id = root.adapter.post(f"/v1/auth/{auth_mount}/role/syncd/secret-id", json={})["data"]["secret_id"]
    cfg = VaultStoreConfig.model_validate(
        {
            "type": "vault",
            "url": bao.url,
            "mount": mount,
            "auth": {"method": "approle", "role_id": role_id, "secret_id": secret_id, "mount": auth_mount},
        }
    )
    buf = io.StringIO()
    logs.configure("debug", "json", stream=buf)
    store = VaultStore("vault", cfg)
    tokens: set[str] = set()
    written = [payload() for _ in range(5)]
    on_loop = LoopCounter(store)
    try:
        for p in written[:3]:
            await store.write("vgs/calm", p)
            tokens.add(store._client.adapter.token)
            store._client.adapter.token = "hvs.stale-token-forces-a-relogin"  # 403, re-login, retry
        for p in written[3:]:
            await store.write("vgs/calm", p)
            tokens.add(store._client.adapter.token)
    finally:
        await store.aclose()
        logs.configure("info", "json")
    text = buf.getvalue()
    assert '"logger": "urllib3.connectionpool"' in text  # debug output of the HTTP layer was on
    assert text.count('"event": "vault_login"') == 4
    assert [status for *_, status in on_loop.seen].count(403) == 3  # the stale token, denied on the loop
    assert [status for *_, status in on_loop.seen][-2:] == [200, 204]  # the last write, plain from the loop
    for secret in (secret_id, role_id, *tokens, *(p.access_token.get_secret_value() for p in written)):
        assert secret not in text
