"""SSM Parameter Store store with real boto3 over HTTP against moto_server."""

from __future__ import annotations

import time
import uuid
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

from syncd.config import AwsSsmStoreConfig, TargetConfig
from syncd.payload import TokenPayload
from syncd.stores import _aws
from syncd.stores.aws_ssm import SsmStore
from syncd.stores.base import FatalStoreError

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("aws_env")]


@pytest.fixture(autouse=True)
def _fresh_limiters():
    _aws.reset_limiters()
    yield
    _aws.reset_limiters()


@pytest.fixture
def ssm(moto_server, aws_env) -> Any:
    return boto3.client("ssm", endpoint_url=moto_server.endpoint_url, region_name="eu-west-1")


@pytest.fixture
def name() -> str:
    return f"/vgs/{uuid.uuid4().hex[:8]}/calm"


def make(moto_server, **options) -> SsmStore:
    options.setdefault("region", "eu-west-1")
    options.setdefault("max_writes_per_second", 1000)  # moto has no quota; tests should not wait
    return SsmStore("ssm", AwsSsmStoreConfig(type="aws-ssm", endpoint_url=moto_server.endpoint_url, **options))


def target(key: str, **options) -> TargetConfig:
    return TargetConfig(store="ssm", key=key, **options)


def payload(token: str, life: float = 300.0) -> TokenPayload:
    now = time.time()
    return TokenPayload(
        credential="calm", access_token=SecretStr(token), issued_at=now, expires_at=now + life, refresh_after=now + 150
    )


async def test_securestring_round_trip_with_kms_key(moto_server, ssm, name):
    store = make(moto_server, kms_key_id="alias/syncd-tokens")
    p = payload("tok-ssm-0123456789abcdef")
    result = await store.write(name, p, target=target(name))
    assert result.written and result.version == "1"
    described = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])["Parameters"][0]
    assert described["Type"] == "SecureString" and described["KeyId"] == "alias/syncd-tokens"
    assert described["Tier"] == "Standard"
    assert ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"] == p.to_json()
    fresh = make(moto_server)
    got = await fresh.read(name, target=target(name))
    assert got is not None and got.fingerprint == p.fingerprint
    assert (await fresh.write(name, p, target=target(name))).written is False  # unchanged: no new version
    assert ssm.get_parameter(Name=name)["Parameter"]["Version"] == 1
    assert await fresh.read(name + "x", target=target(name + "x")) is None
    await store.aclose()
    await fresh.aclose()


async def test_overwrite_creates_versions_without_labels(moto_server, ssm, name):
    store = make(moto_server)
    for i in range(3):
        result = await store.write(name, payload(f"tok-{i}-0123456789abcdef"), target=target(name))
        assert result.version == str(i + 1)
    history = ssm.get_parameter_history(Name=name, WithDecryption=True)["Parameters"]
    assert [h["Version"] for h in history] == [1, 2, 3]
    assert all(not h.get("Labels") for h in history)
    got = await store.read(name, target=target(name))
    assert got is not None and got.access_token.get_secret_value() == "tok-2-0123456789abcdef"
    await store.aclose()


async def test_tags_on_create(moto_server, ssm, name):
    store = make(moto_server, tags={"team": "payments"})
    await store.write(name, payload("tok-0-0123456789abcdef"), target=target(name))
    await store.write(name, payload("tok-1-0123456789abcdef"), target=target(name))
    tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"]
    assert tags == [{"Key": "team", "Value": "payments"}]
    assert ssm.get_parameter(Name=name)["Parameter"]["Version"] == 2
    await store.aclose()


async def test_raw_value_is_the_bare_token(moto_server, ssm, name):
    store = make(moto_server)
    p = payload("tok-raw-0123456789abcdef")
    await store.write(name, p, target=target(name, format="raw"))
    assert ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"] == "tok-raw-0123456789abcdef"
    fresh = make(moto_server)
    assert await fresh.read(name, target=target(name, format="raw")) is None
    assert (await fresh.write(name, p, target=target(name, format="raw"))).written is False
    await store.aclose()
    await fresh.aclose()


async def test_labelled_oldest_version_blocks_writes_and_is_explained(moto_server, ssm, name):
    ssm.put_parameter(Name=name, Value="v1", Type="SecureString")
    ssm.label_parameter_version(Name=name, ParameterVersion=1, Labels=["golden"])
    for i in range(2, 101):
        ssm.put_parameter(Name=name, Value=f"v{i}", Type="SecureString", Overwrite=True)
    store = make(moto_server)
    with pytest.raises(FatalStoreError) as info:
        await store.write(name, payload("tok-0123456789abcdef"), target=target(name))
    msg = info.value.message
    assert info.value.code == "ParameterMaxVersionLimitExceeded" and info.value.kind == "fatal"
    assert "version 1 carries label(s) golden" in msg and "syncd never labels versions" in msg
    assert f"aws ssm unlabel-parameter-version --name {name} --parameter-version 1 --labels golden" in msg
    ssm.unlabel_parameter_version(Name=name, ParameterVersion=1, Labels=["golden"])
    assert (await store.write(name, payload("tok-0123456789abcdef"), target=target(name))).version == "101"
    await store.aclose()


async def test_the_write_limiter_paces_put_parameter(moto_server, ssm, name):
    store = make(moto_server, max_writes_per_second=10)
    started = time.monotonic()
    for i in range(6):
        await store.write(f"{name}{i}", payload(f"tok-{i}-0123456789abcdef"), target=target(f"{name}{i}"))
    elapsed = time.monotonic() - started
    assert elapsed >= 0.45, elapsed  # 6 puts at 10/s: the first is free, then one per 100 ms
    assert store.writes.acquired == 6
    await store.aclose()
