"""TokenReader against real stores: moto_server (Secrets Manager, SSM) and OpenBao (KV v2, v1).

Payloads are written here directly with boto3 / hvac in the wire format of
docs/design.md, so these tests do not depend on the daemon's store modules.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

from syncd.client import (
    AsyncTokenReader,
    TokenExpiredError,
    TokenFormatError,
    TokenNotFoundError,
    TokenReader,
    TokenStoreError,
)
from syncd.payload import TokenPayload, slot_index_doc
from tests.peers.servers import MotoServer, OpenBaoServer, free_port

pytestmark = pytest.mark.integration


def make(token: str, *, issued: float | None = None, lifetime: float = 300.0, stale: bool = False) -> TokenPayload:
    """A payload; ``stale`` puts refresh_after in the past while the token stays valid."""
    now = time.time()
    issued = issued if issued is not None else (now - lifetime * 0.8 if stale else now)
    return TokenPayload(
        credential="calm",
        access_token=SecretStr(token),
        issued_at=issued,
        expires_at=issued + lifetime,
        refresh_after=issued + lifetime / 2,
        scope="cards:read cards:write",
    )


def expired(token: str) -> TokenPayload:
    return make(token, issued=time.time() - 400)


# --------------------------------------------------------------------------- Secrets Manager


@pytest.fixture
def sm(moto_server: MotoServer, aws_env: None) -> Iterator[Any]:
    moto_server.reset()
    yield boto3.client("secretsmanager", endpoint_url=moto_server.endpoint_url)
    moto_server.reset()


def sm_url(moto_server: MotoServer, secret_id: str) -> str:
    return f"aws-sm://{secret_id}?region=eu-west-1&endpoint_url={moto_server.endpoint_url}"


def put(sm: Any, name: str, value: str) -> None:
    try:
        sm.put_secret_value(SecretId=name, SecretString=value)
    except sm.exceptions.ResourceNotFoundException:
        sm.create_secret(Name=name, SecretString=value)


def test_sm_fresh_stale_expired_missing_corrupt(sm: Any, moto_server: MotoServer) -> None:
    put(sm, "vgs/calm", make("sm-tok-1").to_json())
    r = TokenReader(sm_url(moto_server, "vgs/calm"), min_reread=0.3)
    assert r.get() == "sm-tok-1"
    assert r.token_info().scope == "cards:read cards:write"
    put(sm, "vgs/calm", make("sm-tok-2").to_json())
    assert r.get() == "sm-tok-1"  # fresh: cached, no read
    assert r.reads == 1

    put(sm, "vgs/stale", make("sm-stale-1", stale=True).to_json())
    stale = TokenReader(sm_url(moto_server, "vgs/stale"), min_reread=0.3)
    assert stale.get() == "sm-stale-1"
    assert stale.get() == "sm-stale-1"
    assert stale.reads == 1  # past refresh_after, but re-read at most every min_reread
    put(sm, "vgs/stale", make("sm-stale-2").to_json())
    time.sleep(0.35)
    assert stale.get() == "sm-stale-2"
    assert stale.reads == 2

    put(sm, "vgs/expired", expired("sm-old").to_json())
    with pytest.raises(
        TokenExpiredError, match=r"aws-sm://vgs/expired: the stored token .* expired 1\d\ds ago"
    ) as info:
        TokenReader(sm_url(moto_server, "vgs/expired")).get()
    assert "sm-old" not in str(info.value)

    with pytest.raises(TokenNotFoundError, match="aws-sm://vgs/nope: secret 'vgs/nope' does not exist"):
        TokenReader(sm_url(moto_server, "vgs/nope")).get()

    put(sm, "vgs/corrupt", '{"access_token": "sm-secret-x", "credential": ')
    with pytest.raises(TokenFormatError, match="not valid JSON") as fmt:
        TokenReader(sm_url(moto_server, "vgs/corrupt")).get()
    assert "sm-secret-x" not in str(fmt.value)
    put(sm, "vgs/corrupt", json.dumps({"hello": "world"}))
    with pytest.raises(TokenFormatError, match="missing field"):
        TokenReader(sm_url(moto_server, "vgs/corrupt")).get()


def test_sm_slots_pick_the_freshest_unexpired(sm: Any, moto_server: MotoServer) -> None:
    now = time.time()
    keys = [f"vgs/card-{i}" for i in range(4)]
    put(sm, "vgs/card", json.dumps(slot_index_doc(keys)))
    put(sm, keys[0], make("slot-0", issued=now - 400).to_json())  # expired
    put(sm, keys[1], make("slot-1", issued=now - 150).to_json())  # valid, older
    put(sm, keys[2], make("slot-2", issued=now - 10).to_json())  # the freshest
    put(sm, keys[3], '{"broken": ')  # corrupt: ignored while another slot is usable
    r = TokenReader(sm_url(moto_server, "vgs/card"))
    assert r.get() == "slot-2"
    assert r.token_info().issued_at == pytest.approx(now - 10, abs=0.01)

    # The daemon writes the next slot round-robin: after a forced re-read it wins.
    put(sm, keys[3], make("slot-3", issued=now).to_json())
    assert r.refresh().access_token.get_secret_value() == "slot-3"


def test_sm_slots_missing_expired_and_many(sm: Any, moto_server: MotoServer) -> None:
    now = time.time()
    put(sm, "vgs/empty", json.dumps(slot_index_doc(["vgs/empty-0", "vgs/empty-1"])))
    with pytest.raises(TokenNotFoundError, match="none exists yet"):
        TokenReader(sm_url(moto_server, "vgs/empty")).get()

    put(sm, "vgs/old", json.dumps(slot_index_doc(["vgs/old-0", "vgs/old-1"])))
    put(sm, "vgs/old-0", make("old-0", issued=now - 500).to_json())
    put(sm, "vgs/old-1", make("old-1", issued=now - 400).to_json())
    with pytest.raises(TokenExpiredError, match=r"expired 1\d\ds ago"):  # the freshest of the expired slots
        TokenReader(sm_url(moto_server, "vgs/old")).get()

    put(sm, "vgs/bad", json.dumps(slot_index_doc(["vgs/bad-0"])))
    put(sm, "vgs/bad-0", "not json")
    with pytest.raises(TokenFormatError, match="no slot holds a usable payload"):
        TokenReader(sm_url(moto_server, "vgs/bad")).get()

    # More slots than one BatchGetSecretValue call returns (20): the reader pages through them.
    many = [f"vgs/many-{i}" for i in range(23)]
    put(sm, "vgs/many", json.dumps(slot_index_doc(many)))
    for i, key in enumerate(many):
        put(sm, key, make(f"many-{i}", issued=now - 100 + i).to_json())
    assert TokenReader(sm_url(moto_server, "vgs/many")).get() == "many-22"


def test_sm_async_reader(sm: Any, moto_server: MotoServer) -> None:
    put(sm, "vgs/calm", make("sm-async").to_json())

    async def main() -> list[str]:
        async with AsyncTokenReader(sm_url(moto_server, "vgs/calm")) as r:
            tokens = await asyncio.gather(*(r.get() for _ in range(8)))
            assert r.reads == 1
            return list(tokens)

    assert asyncio.run(main()) == ["sm-async"] * 8


def test_sm_unreachable_endpoint() -> None:
    port = free_port()
    r = TokenReader(f"aws-sm://vgs/calm?region=eu-west-1&endpoint_url=http://127.0.0.1:{port}", timeout=1.0)
    r._cache.source._session = boto3.session.Session(  # type: ignore[attr-defined]
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1"
    )
    with pytest.raises(TokenStoreError, match="EndpointConnectionError|Could not connect"):
        r.get()


# --------------------------------------------------------------------------- SSM


def test_ssm_fresh_stale_expired_missing_corrupt(moto_server: MotoServer, aws_env: None) -> None:
    moto_server.reset()
    ssm = boto3.client("ssm", endpoint_url=moto_server.endpoint_url)

    def put_param(name: str, value: str) -> None:
        ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)

    def url(name: str) -> str:
        return f"aws-ssm://{name}?region=eu-west-1&endpoint_url={moto_server.endpoint_url}"

    put_param("/vgs/calm", make("ssm-tok-1").to_json())
    r = TokenReader(url("/vgs/calm"))
    assert r.source == "aws-ssm:///vgs/calm"
    assert r.get() == "ssm-tok-1"
    put_param("/vgs/calm", make("ssm-tok-2").to_json())
    assert r.get() == "ssm-tok-1" and r.reads == 1

    put_param("/vgs/stale", make("ssm-stale", stale=True).to_json())
    stale = TokenReader(url("/vgs/stale"))
    assert stale.get() == "ssm-stale" and stale.get() == "ssm-stale"
    assert stale.reads == 1

    put_param("/vgs/expired", expired("ssm-old").to_json())
    with pytest.raises(TokenExpiredError, match="aws-ssm:///vgs/expired"):
        TokenReader(url("/vgs/expired")).get()

    with pytest.raises(TokenNotFoundError, match="ParameterNotFound"):
        TokenReader(url("/vgs/nope")).get()

    put_param("/vgs/raw", "a-bare-token")
    with pytest.raises(TokenFormatError, match="does not hold a JSON payload") as info:
        TokenReader(url("/vgs/raw")).get()
    assert "a-bare-token" not in str(info.value)
    moto_server.reset()


# --------------------------------------------------------------------------- OpenBao / Vault


def bao_url(path: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"vault://{path}" + (f"?{query}" if query else "")


def test_vault_kv2(openbao: OpenBaoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_ADDR", openbao.url)
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    kv = openbao.client().secrets.kv.v2

    kv.create_or_update_secret(path="vgs/calm", secret=make("kv2-tok-1").to_dict())
    r = TokenReader("vault://secret/vgs/calm", min_reread=0.3)
    assert r.get() == "kv2-tok-1"
    kv.create_or_update_secret(path="vgs/calm", secret=make("kv2-tok-2").to_dict())
    assert r.get() == "kv2-tok-1" and r.reads == 1  # fresh: no read
    assert r.refresh().access_token.get_secret_value() == "kv2-tok-2"

    kv.create_or_update_secret(path="vgs/stale", secret=make("kv2-stale", stale=True).to_dict())
    stale = TokenReader("vault://secret/vgs/stale", min_reread=0.3)
    assert stale.get() == "kv2-stale" and stale.get() == "kv2-stale"
    assert stale.reads == 1

    kv.create_or_update_secret(path="vgs/expired", secret=expired("kv2-old").to_dict())
    with pytest.raises(TokenExpiredError, match="vault://secret/vgs/expired: the stored token"):
        TokenReader("vault://secret/vgs/expired").get()

    with pytest.raises(TokenNotFoundError, match="no secret at secret/data/vgs/nope"):
        TokenReader("vault://secret/vgs/nope").get()

    doc = make("kv2-secret-x").to_dict()
    doc["access_token"] = "kv2-secret-y"  # fingerprint no longer matches
    kv.create_or_update_secret(path="vgs/corrupt", secret=doc)
    with pytest.raises(TokenFormatError, match="fingerprint") as info:
        TokenReader("vault://secret/vgs/corrupt").get()
    assert "kv2-secret" not in str(info.value)
    kv.create_or_update_secret(path="vgs/corrupt", secret={"foo": "bar"})
    with pytest.raises(TokenFormatError, match="missing field"):
        TokenReader("vault://secret/vgs/corrupt").get()

    # A deleted latest version reads as missing.
    kv.delete_latest_version_of_secret(path="vgs/stale")
    with pytest.raises(TokenNotFoundError):
        TokenReader("vault://secret/vgs/stale").get()


def test_vault_kv2_raw_format_with_custom_metadata(openbao: OpenBaoServer) -> None:
    kv = openbao.client().secrets.kv.v2
    p = make("kv2-raw-tok")
    kv.create_or_update_secret(path="vgs/raw", secret={"access_token": "kv2-raw-tok"})
    public = p.public_dict()
    meta = {k: str(public[k]) for k in ("credential", "issued_at", "expires_at", "refresh_after", "fingerprint")}
    kv.update_metadata(path="vgs/raw", custom_metadata=meta)
    r = TokenReader("vault://secret/vgs/raw", vault_addr=openbao.url, vault_token=openbao.root_token)
    assert r.get() == "kv2-raw-tok"
    assert r.token_info().expires_at == pytest.approx(p.expires_at, abs=0.001)

    kv.create_or_update_secret(path="vgs/raw-nometa", secret={"access_token": "kv2-raw-tok"})
    with pytest.raises(TokenFormatError, match="no expires_at in the KV v2 custom_metadata"):
        TokenReader("vault://secret/vgs/raw-nometa", vault_addr=openbao.url, vault_token=openbao.root_token).get()


def test_vault_kv1_and_permissions(openbao: OpenBaoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VAULT_ADDR", "VAULT_TOKEN", "BAO_ADDR", "BAO_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/nonexistent-home")
    root = openbao.client()
    root.sys.enable_secrets_engine(backend_type="kv", path="kv1", options={"version": "1"})
    root.secrets.kv.v1.create_or_update_secret(path="vgs/calm", secret=make("kv1-tok").to_dict(), mount_point="kv1")
    opts: dict[str, Any] = {"vault_addr": openbao.url, "vault_token": openbao.root_token}

    r = TokenReader("vault://kv1/vgs/calm?kv=1", **opts)
    assert r.source == "vault://kv1/vgs/calm?kv=1"
    assert r.get() == "kv1-tok"

    root.secrets.kv.v1.create_or_update_secret(
        path="vgs/stale", secret=make("kv1-stale", stale=True).to_dict(), mount_point="kv1"
    )
    assert TokenReader("vault://kv1/vgs/stale?kv=1", **opts).get() == "kv1-stale"
    root.secrets.kv.v1.create_or_update_secret(path="vgs/old", secret=expired("kv1-old").to_dict(), mount_point="kv1")
    with pytest.raises(TokenExpiredError):
        TokenReader("vault://kv1/vgs/old?kv=1", **opts).get()
    with pytest.raises(TokenNotFoundError):
        TokenReader("vault://kv1/vgs/nope?kv=1", **opts).get()
    root.secrets.kv.v1.create_or_update_secret(path="vgs/bad", secret={"access_token": "kv1-x"}, mount_point="kv1")
    with pytest.raises(TokenFormatError, match="missing field"):
        TokenReader("vault://kv1/vgs/bad?kv=1", **opts).get()

    # KV v2 reader pointed at a v1 mount: not found, with the hint.
    with pytest.raises(TokenNotFoundError, match=r"add \?kv=1"):
        TokenReader("vault://kv1/vgs/calm", **opts).get()

    # A token without a policy for the path: a store error that names the fix.
    weak = root.auth.token.create(policies=["default"], ttl="10m")["auth"]["client_token"]
    with pytest.raises(TokenStoreError, match="permission denied reading kv1/vgs/calm") as info:
        TokenReader("vault://kv1/vgs/calm?kv=1", vault_addr=openbao.url, vault_token=weak).get()
    assert weak not in str(info.value)

    # No token anywhere: a clear error before any request.
    with pytest.raises(TokenStoreError, match="no Vault token"):
        TokenReader("vault://kv1/vgs/calm?kv=1", vault_addr=openbao.url).get()

    # Vault unreachable.
    with pytest.raises(TokenStoreError, match="cannot reach Vault"):
        TokenReader("vault://kv1/vgs/calm?kv=1", vault_addr=f"http://127.0.0.1:{free_port()}", vault_token="x").get()
