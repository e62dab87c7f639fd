"""Secrets Manager store with real boto3 over HTTP against moto_server.

moto neither throttles nor enforces the version quota, so those are injected at
botocore's HTTP layer (``Faults``); everything else is the real request/response
path. Every test uses its own secret names, so the session's moto needs no reset.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

from syncd import policy
from syncd.config import AwsSecretsManagerStoreConfig, TargetConfig
from syncd.payload import TokenPayload, slot_index_doc
from syncd.stores import _aws
from syncd.stores._aws import client_request_token
from syncd.stores.aws_secretsmanager import SecretsManagerStore
from syncd.stores.base import FatalStoreError
from tests.helpers import SyncdProcess, wait_for
from tests.unit.test_aws_common import Faults, error, lost_response

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("aws_env")]


@pytest.fixture(autouse=True)
def _fresh_limiters():
    _aws.reset_limiters()
    yield
    _aws.reset_limiters()


@pytest.fixture
def sm(moto_server, aws_env) -> Any:
    return boto3.client("secretsmanager", endpoint_url=moto_server.endpoint_url, region_name="eu-west-1")


@pytest.fixture
def key() -> str:
    return f"vgs/{uuid.uuid4().hex[:8]}/calm"


def make(moto_server, **options) -> SecretsManagerStore:
    options.setdefault("region", "eu-west-1")
    return SecretsManagerStore(
        "aws", AwsSecretsManagerStoreConfig(type="aws-secretsmanager", endpoint_url=moto_server.endpoint_url, **options)
    )


def target(key: str, **options) -> TargetConfig:
    return TargetConfig(store="aws", key=key, **options)


def payload(token: str, life: float = 300.0, issued: float | None = None) -> TokenPayload:
    now = time.time() if issued is None else issued
    return TokenPayload(
        credential="calm",
        access_token=SecretStr(token),
        issued_at=now,
        expires_at=now + life,
        refresh_after=now + life / 2,
        scope="cards:read",
    )


def versions(sm: Any, secret_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = sm.list_secret_version_ids(SecretId=secret_id, IncludeDeprecated=True)["Versions"]
    return found


# --------------------------------------------------------------------------- basics


async def test_round_trip_json_and_raw(moto_server, sm, key):
    store = make(moto_server, create_missing=True)
    p = payload("tok-rt-0123456789abcdef")
    result = await store.write(key, p, target=target(key))
    assert result.written and result.version == client_request_token(key, p.fingerprint)
    assert sm.get_secret_value(SecretId=key)["SecretString"] == p.to_json()
    fresh = make(moto_server)
    got = await fresh.read(key, target=target(key))
    assert got is not None and got.fingerprint == p.fingerprint and got.scope == "cards:read"
    assert got.expires_at == pytest.approx(p.expires_at, abs=1)

    raw_key = key + "-raw"
    await store.write(raw_key, p, target=target(raw_key, format="raw"))
    assert sm.get_secret_value(SecretId=raw_key)["SecretString"] == "tok-rt-0123456789abcdef"
    assert await fresh.read(raw_key, target=target(raw_key, format="raw")) is None  # no expiry to judge
    assert (await fresh.write(raw_key, p, target=target(raw_key, format="raw"))).written is False
    assert await fresh.read(key + "-nothing", target=target(key + "-nothing")) is None
    await store.aclose()
    await fresh.aclose()


async def test_create_missing_off_names_the_secret_and_the_permission(moto_server, sm, key):
    store = make(moto_server)
    with pytest.raises(FatalStoreError) as info:
        await store.write(key, payload("tok-0123456789abcdef"), target=target(key))
    msg = info.value.message
    assert info.value.code == "ResourceNotFoundException"
    assert f"secret {key} does not exist in eu-west-1" in msg
    assert "create_missing = true" in msg and "secretsmanager:CreateSecret" in msg
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        sm.describe_secret(SecretId=key)
    await store.aclose()


async def test_create_missing_on_passes_kms_key_tags_and_description(moto_server, sm, key):
    store = make(moto_server, create_missing=True, kms_key_id="alias/syncd-tokens", tags={"team": "payments"})
    await store.write(key, payload("tok-0123456789abcdef"), target=target(key))
    described = sm.describe_secret(SecretId=key)
    assert described["KmsKeyId"] == "alias/syncd-tokens"
    assert described["Tags"] == [{"Key": "team", "Value": "payments"}]
    assert described["Description"] == "OAuth access token rotated by syncd"
    await store.aclose()


async def test_retry_after_a_lost_response_makes_one_version(moto_server, sm, key):
    """The first PutSecretValue reaches the server but its answer is lost; botocore retries it."""
    sm.create_secret(Name=key, SecretString="{}")
    store = make(moto_server)
    faults = Faults(store._client).add("PutSecretValue", lost_response())
    p = payload("tok-lost-0123456789abcdef")
    result = await store.write(key, p, target=target(key))
    assert faults.sent["PutSecretValue"] == 2  # the lost one and botocore's retry, same ClientRequestToken
    token = client_request_token(key, p.fingerprint)
    ids = [v["VersionId"] for v in versions(sm, key)]
    assert ids.count(token) == 1 and len(ids) == 2  # the initial "{}" and exactly one for the token
    assert result.version == token
    # The same request sent again by hand is also absorbed.
    sm.put_secret_value(SecretId=key, SecretString=p.to_json(), ClientRequestToken=token)
    assert len(versions(sm, key)) == 2
    await store.aclose()


async def test_same_token_with_another_document_gets_its_own_version(moto_server, sm, key):
    """A version id is immutable: the same token re-planned (new refresh_after) is stored under a salted id."""
    store = make(moto_server, create_missing=True)
    p = payload("tok-same-0123456789abcdef")
    await store.write(key, p, target=target(key))
    rebased = TokenPayload(
        credential=p.credential,
        access_token=p.access_token,
        issued_at=p.issued_at,
        expires_at=p.expires_at,
        refresh_after=p.refresh_after + 10,
        scope=p.scope,
    )
    other = make(moto_server)  # knows nothing and may not read first
    Faults(other._client).add("GetSecretValue", error("AccessDeniedException", message="not authorized"))
    result = await other.write(key, rebased, target=target(key))
    assert result.written
    assert result.version == client_request_token(key, p.fingerprint, salt=rebased.to_json())
    assert sm.get_secret_value(SecretId=key)["SecretString"] == rebased.to_json()
    assert len(versions(sm, key)) == 2
    await store.aclose()
    await other.aclose()


async def test_a_foreign_document_is_reported_not_parsed(moto_server, sm, key):
    sm.create_secret(Name=key, SecretString='{"username": "app"}')
    store = make(moto_server)
    with pytest.raises(FatalStoreError) as info:
        await store.read(key, target=target(key))
    assert info.value.code == "payload" and key in info.value.message
    # ... and a write replaces it (it is the configured target)
    assert (await store.write(key, payload("tok-0123456789abcdef"), target=target(key))).written
    await store.aclose()


async def test_throttled_then_accepted_writes_once(moto_server, sm, key):
    store = make(moto_server, create_missing=True)
    faults = Faults(store._client).add("CreateSecret", error("ThrottlingException", message="Rate exceeded"))
    await store.write(key, payload("tok-0123456789abcdef"), target=target(key))
    assert faults.sent["CreateSecret"] == 2 and store.writes.debited == 1
    assert len(versions(sm, key)) == 1
    await store.aclose()


async def test_one_call_per_rotation_and_none_when_unchanged(moto_server, sm, key):
    sm.create_secret(Name=key, SecretString=payload("tok-old-0123456789abcdef").to_json())
    store = make(moto_server)
    faults = Faults(store._client)
    assert await store.read(key, target=target(key)) is not None  # the start-up read fills the memory
    faults.sent.clear()
    tokens = [payload(f"tok-{i}-0123456789abcdef") for i in range(5)]
    for p in tokens:
        assert (await store.write(key, p, target=target(key))).written
        assert not (await store.write(key, p, target=target(key))).written
    assert dict(faults.sent) == {"PutSecretValue": 5}  # no GetSecretValue before a Put, no call for a repeat
    assert len(versions(sm, key)) == 6
    await store.aclose()


# --------------------------------------------------------------------------- slots


async def test_slots_round_robin_index_and_freshest(moto_server, sm, key):
    store = make(moto_server, create_missing=True)
    tgt = target(key, slots=3)
    written = []
    for i in range(7):
        p = payload(f"tok-slot-{i}-0123456789abcdef")
        written.append((await store.write(key, p, target=tgt)).location)
    names = [f"{key}-{i}" for i in range(3)]
    assert written == [names[i % 3] for i in range(7)]
    assert [len(versions(sm, n)) for n in names] == [3, 2, 2]
    index = sm.get_secret_value(SecretId=key)["SecretString"]
    assert index == json.dumps(slot_index_doc(names)) == json.dumps({"slots": 3, "keys": names})
    assert len(versions(sm, key)) == 1  # written once, not per rotation
    fresh = make(moto_server)
    got = await fresh.read(key, target=tgt)
    assert got is not None and got.access_token.get_secret_value() == "tok-slot-6-0123456789abcdef"
    # Without slots configured, a reader of <key> follows the index the way a consumer does.
    again = await make(moto_server).read(key, target=target(key))
    assert again is not None and again.fingerprint == got.fingerprint
    await store.aclose()
    await fresh.aclose()


async def test_read_returns_the_freshest_unexpired_slot(moto_server, sm, key):
    names = [f"{key}-{i}" for i in range(3)]
    now = time.time()
    expired = payload("tok-expired-0123456789abcdef", life=60, issued=now - 120)
    older = payload("tok-older-0123456789abcdef", life=300, issued=now - 100)
    newest = payload("tok-newest-0123456789abcdef", life=300, issued=now - 10)
    for name, p in zip(names, [older, newest, expired], strict=True):
        sm.create_secret(Name=name, SecretString=p.to_json())
    sm.create_secret(Name=key, SecretString=json.dumps(slot_index_doc(names)))
    store = make(moto_server)
    got = await store.read(key, target=target(key, slots=3))
    assert got is not None and got.fingerprint == newest.fingerprint
    # The next write goes to the slot with the oldest token (the expired one), never over the newest.
    result = await store.write(key, payload("tok-next-0123456789abcdef"), target=target(key, slots=3))
    assert result.location == names[2]
    # all expired: the latest one is still reported (so `syncd inspect` can say how long ago)
    only = f"{key}/only"
    sm.create_secret(Name=f"{only}-0", SecretString=expired.to_json())
    got = await store.read(only, target=target(only, slots=1))
    assert got is not None and got.expired(time.time())
    await store.aclose()


async def test_changing_the_slot_count(moto_server, sm, key):
    store = make(moto_server, create_missing=True)
    for i in range(3):
        await store.write(key, payload(f"tok-a{i}-0123456789abcdef"), target=target(key, slots=3))
    slot2_versions = len(versions(sm, f"{key}-2"))
    # Shrink to 2: the index is rewritten, slot 2 is left alone and no longer read, even when fresher.
    shrunk = make(moto_server)
    await shrunk.read(key, target=target(key, slots=2))
    await shrunk.write(key, payload("tok-b0-0123456789abcdef"), target=target(key, slots=2))
    assert json.loads(sm.get_secret_value(SecretId=key)["SecretString"]) == {
        "slots": 2,
        "keys": [f"{key}-0", f"{key}-1"],
    }
    sm.put_secret_value(SecretId=f"{key}-2", SecretString=payload("tok-stray-0123456789abcdef", life=900).to_json())
    got = await make(moto_server).read(key, target=target(key, slots=2))
    assert got is not None and got.access_token.get_secret_value() == "tok-b0-0123456789abcdef"
    assert len(versions(sm, f"{key}-2")) == slot2_versions + 1  # only our stray put
    # Grow to 4 without create_missing: the missing slot is named, nothing is half-written.
    grown = make(moto_server)
    with pytest.raises(FatalStoreError) as info:
        await grown.write(key, payload("tok-c0-0123456789abcdef"), target=target(key, slots=4))
    assert f"{key}-3" in info.value.message and "create_missing = true" in info.value.message
    assert json.loads(sm.get_secret_value(SecretId=key)["SecretString"])["slots"] == 2
    # With create_missing the slot is created and the index follows.
    grower = make(moto_server, create_missing=True)
    result = await grower.write(key, payload("tok-c0-0123456789abcdef"), target=target(key, slots=4))
    assert result.location == f"{key}-3"
    assert json.loads(sm.get_secret_value(SecretId=key)["SecretString"])["slots"] == 4
    await store.aclose()


async def test_missing_index_without_create_missing_is_named(moto_server, sm, key):
    for i in range(2):
        sm.create_secret(Name=f"{key}-{i}", SecretString="{}")
    store = make(moto_server)
    with pytest.raises(FatalStoreError) as info:
        await store.write(key, payload("tok-0123456789abcdef"), target=target(key, slots=2))
    assert f"secret {key} does not exist" in info.value.message
    await store.aclose()


async def test_auto_slots_without_a_plan_keep_the_stored_index(moto_server, sm, key):
    planned = make(moto_server, create_missing=True)
    wpd = policy.writes_per_day(300, policy.RefreshPolicy())
    planned.plan(key, wpd, target=target(key, slots="auto"))  # what `syncd run` does at start-up: N = 8
    await planned.write(key, payload("tok-0-0123456789abcdef"), target=target(key, slots="auto"))
    assert json.loads(sm.get_secret_value(SecretId=key)["SecretString"])["slots"] == 8
    # `syncd once` (no plan) with a 20-minute token: keeps the 8 slots the daemon chose, not 2
    once = make(moto_server, create_missing=True)
    result = await once.write(key, payload("tok-1-0123456789abcdef", life=1200), target=target(key, slots="auto"))
    assert result.location == f"{key}-1"
    assert json.loads(sm.get_secret_value(SecretId=key)["SecretString"])["slots"] == 8
    await planned.aclose()
    await once.aclose()


async def test_assume_role_with_session_name_syncd(moto_server, sm, key):
    role = "arn:aws:iam::123456789012:role/syncd-writer"
    store = make(moto_server, create_missing=True, role_arn=role, sts_endpoint_url=moto_server.endpoint_url)
    await store.write(key, payload("tok-0123456789abcdef"), target=target(key))
    sts = store._session.client("sts", endpoint_url=moto_server.endpoint_url, region_name="eu-west-1")
    assert sts.get_caller_identity()["Arn"].endswith(":assumed-role/syncd-writer/syncd")
    await store.aclose()


# --------------------------------------------------------------------------- the daemon with slots


def _consumer_read(sm: Any, key: str) -> tuple[TokenPayload | None, int]:
    """What a consumer does: read the index at <key>, BatchGetSecretValue the slots, keep the freshest unexpired."""
    doc = json.loads(sm.get_secret_value(SecretId=key)["SecretString"])
    resp = sm.batch_get_secret_value(SecretIdList=doc["keys"])
    now = time.time()
    found = [TokenPayload.from_json(v["SecretString"]) for v in resp["SecretValues"] if v.get("SecretString")]
    valid = [p for p in found if not p.expired(now)]
    return (max(valid, key=lambda p: p.expires_at) if valid else None), len(found)


async def test_syncd_run_with_slots_never_serves_an_expired_token(oidc_server, moto_server, sm, key, tmp_path):
    """``syncd run`` with 3 s tokens over 3 slots for 30 s; a consumer polls every 100 ms."""
    names = [f"{key}-{i}" for i in range(3)]
    config = f"""
[defaults]
min_remaining = "1s"
retry_min = "0.2s"
retry_max = "1s"
token_lifetime = "3s"

[stores.aws]
type = "aws-secretsmanager"
region = "eu-west-1"
endpoint_url = "{moto_server.endpoint_url}"
create_missing = true
quota_check = false

[[credentials]]
name = "calm"
token_url = "{oidc_server.token_url}"
client_id = "calm"
client_secret = {{ env = "CALM_SECRET" }}
scopes = ["cards:read"]
targets = [ {{ store = "aws", key = "{key}", slots = 3 }} ]
"""
    store = make(moto_server)
    with SyncdProcess(config, tmp_path, env={"CALM_SECRET": "calm-secret-0123456789"}) as daemon:
        daemon.wait_http()
        wait_for(lambda: "SecretString" in _safe_get(sm, key), 15, what="the slot index")
        seen: set[str] = set()
        polls = 0
        deadline = time.time() + 30
        # At least 30 s (ten lifetimes) and 200 polls: a loaded machine polls slower, so it runs
        # longer instead of failing on a count; the hard stop keeps a stuck read from hanging.
        hard_stop = deadline + 60
        while (time.time() < deadline or polls < 200) and time.time() < hard_stop:
            pick, _ = _consumer_read(sm, key)
            assert pick is not None, "the consumer found no unexpired token"
            ours = await store.read(key, target=target(key, slots=3))
            now = time.time()
            assert ours is not None and not ours.expired(now), "read() returned an expired token"
            assert ours.expires_at >= pick.expires_at  # read() after the consumer: never an older token
            seen.add(pick.fingerprint)
            polls += 1
            await asyncio.sleep(0.1)
        status = daemon.get("/status").json()["credentials"][0]
        assert daemon.stop() == 0
    writes = [e for e in daemon.events("write") if e.get("outcome") == "ok" and e.get("written")]
    per_slot = [len(versions(sm, n)) for n in names]
    total = sum(per_slot)
    print(f"slots run: {polls} polls, {len(seen)} tokens seen, {len(writes)} writes, per slot {per_slot}")
    assert polls >= 200 and len(seen) >= 12, (polls, len(seen))
    assert total == len(writes), (per_slot, len(writes))
    assert max(per_slot) - min(per_slot) <= 1, per_slot  # round-robin: every slot within its share
    assert sm.get_secret_value(SecretId=key)["SecretString"] == json.dumps({"slots": 3, "keys": names})
    assert len(versions(sm, key)) == 1
    assert status["state"] == "ok"
    assert not [e for e in daemon.events() if e.get("level") == "error"]
    assert "calm-secret-0123456789" not in daemon.log_text()
    await store.aclose()


def _safe_get(sm: Any, key: str) -> dict[str, Any]:
    try:
        found: dict[str, Any] = sm.get_secret_value(SecretId=key)
        return found
    except sm.exceptions.ResourceNotFoundException:
        return {}
